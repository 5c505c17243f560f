package server

import (
	"database/sql"
	"net/http"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/issuance"
	"github.com/idprotect/enroll/internal/limits"
)

// Metrics is one server's Prometheus registry. It is not the process-global default
// registry, so several servers in one process (tests, replicas in a benchmark) keep apart.
//
// Labels carry only names fixed by the code (RPC method, status code, limit name) and batch
// and incident ids, never anything a caller sent: no code, token, client id or address.
type Metrics struct {
	reg        *prometheus.Registry
	rpc        *grpcprom.ServerMetrics
	rejections *prometheus.CounterVec
	batchDone  *prometheus.GaugeVec
	batchTotal *prometheus.GaugeVec
	codes      prometheus.Counter
}

// NewMetrics returns a registry with the Go runtime and process collectors and the
// server's own metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			// From a cached token check (~1ms) to a slow import chunk.
			grpcprom.WithHistogramBuckets([]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		)),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_limit_rejections_total",
			Help: "Calls refused with RESOURCE_EXHAUSTED, by the budget that was spent.",
		}, []string{"limit"}),
		batchDone: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "enroll_batch_codes_issued",
			Help: "Codes issued so far in each batch this replica is issuing.",
		}, []string{"batch_id", "incident_id"}),
		batchTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "enroll_batch_codes_total",
			Help: "Codes each batch this replica is issuing will have when done.",
		}, []string{"batch_id", "incident_id"}),
		codes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "enroll_issuance_codes_issued_total",
			Help: "Codes issued by this replica.",
		}),
	}
	// Every budget at zero from the start, so an alert on its rate has a series to read.
	for _, l := range []string{limits.LimitCodeFailuresPerAddress, limits.LimitCodeFailuresGlobal, limits.LimitResendPerAddress, limits.LimitPartnerCalls} {
		m.rejections.WithLabelValues(l)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rpc, m.rejections, m.batchDone, m.batchTotal, m.codes,
	)
	return m
}

// Registry is where further collectors go.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddDB exports the connection pool statistics of db (go_sql_* with db_name="enroll").
func (m *Metrics) AddDB(db *sql.DB) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, "enroll"))
}

// LimitRejected counts a refusal by the named budget (limits.Config.Rejected).
func (m *Metrics) LimitRejected(limit string) { m.rejections.WithLabelValues(limit).Inc() }

// Progress reports issuance to the batch gauges (issuance.Config.Progress).
func (m *Metrics) Progress() issuance.Progress { return batchProgress{m} }

type batchProgress struct{ m *Metrics }

func (p batchProgress) Issued(b *enrollment.Batch, issued, chunk int64) {
	p.m.batchDone.WithLabelValues(b.ID, b.IncidentID).Set(float64(issued))
	p.m.batchTotal.WithLabelValues(b.ID, b.IncidentID).Set(float64(b.Total))
	p.m.codes.Add(float64(chunk))
}

// Stopped drops the batch's series: a finished batch is in the database, and one taken over
// by another replica is reported there.
func (p batchProgress) Stopped(b *enrollment.Batch) {
	p.m.batchDone.DeleteLabelValues(b.ID, b.IncidentID)
	p.m.batchTotal.DeleteLabelValues(b.ID, b.IncidentID)
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
