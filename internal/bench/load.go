package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

// The load of enrollbench serve: each client, in a loop until the phase ends, redeems a fresh
// code (public, no token) and then activates the enrollment it got as the partner (bearer
// token). Both calls are timed apart; an operation is the pair.

// caller performs the two calls of one operation over one transport. One caller per client.
type caller interface {
	redeem(ctx context.Context, code string) (enrollment string, err error)
	activate(ctx context.Context, enrollment, memberID string) error
	close()
}

// codePool hands out each plaintext code once, to whichever client asks first.
type codePool struct {
	codes []string
	next  atomic.Int64
}

func (p *codePool) take() (string, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.codes)) {
		return "", false
	}
	return p.codes[i], true
}

func (p *codePool) left() int {
	return max(0, len(p.codes)-int(p.next.Load()))
}

// phaseResult is what one phase (one server, one transport) measured.
type phaseResult struct {
	Name     string
	Ops      int64 // completed redeem+activate pairs in the measured window
	Elapsed  time.Duration
	Redeem   []time.Duration // sorted, successful calls
	Activate []time.Duration
	Errors   int64
	ErrKinds map[string]int64 // "redeem: AlreadyExists: ..." -> count
	// OutOfCodes is set if the phase ended early because no fresh code was left (Elapsed is
	// then the shorter window that was measured).
	OutOfCodes bool
	// ServerCPU is the server process's user+system CPU over the measured window;
	// ClientCPU this process's (the load generator, and nothing else on the REST side).
	ServerCPU, ClientCPU time.Duration
}

// OpsPerSec is completed operations per second.
func (r *phaseResult) OpsPerSec() float64 { return Rate(r.Ops, r.Elapsed) }

// CPUPerOp is the server's CPU time per completed operation.
func (r *phaseResult) CPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Ops)
}

// percentile of sorted durations (nearest rank); 0 if empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// phaseSpec says how to run one phase.
type phaseSpec struct {
	name      string
	clients   int
	warmup    time.Duration
	duration  time.Duration
	newCaller func() (caller, error)
	pool      *codePool
	serverPID int // sampled for CPU; 0 for none
}

type clientStats struct {
	ops                int64
	redeem, activate   []time.Duration
	errors             int64
	kinds              map[string]int64
	outOfCodes         bool // set only when the pool ran dry; the client then returns
	measuring, stopped *atomic.Bool
}

// runPhase runs spec.clients clients for warmup (not recorded) and then duration.
func runPhase(ctx context.Context, spec phaseSpec) (*phaseResult, error) {
	callers := make([]caller, spec.clients)
	for i := range callers {
		c, err := spec.newCaller()
		if err != nil {
			for _, c := range callers[:i] {
				c.close()
			}
			return nil, err
		}
		callers[i] = c
	}
	defer func() {
		for _, c := range callers {
			c.close()
		}
	}()
	var measuring, stopped atomic.Bool
	stats := make([]*clientStats, spec.clients)
	var wg sync.WaitGroup
	for i, c := range callers {
		st := &clientStats{kinds: map[string]int64{}, measuring: &measuring, stopped: &stopped}
		stats[i] = st
		wg.Go(func() { st.loop(ctx, c, spec.pool) })
	}
	// Clients return early only when the codes run out; the window then ends with the last.
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-time.After(spec.warmup):
	case <-ctx.Done():
	case <-drained:
	}
	var cpu0, cpu1 ProcSample
	if spec.serverPID != 0 {
		cpu0, _ = ReadProc(spec.serverPID)
	}
	self0 := selfCPU()
	measuring.Store(true)
	start := time.Now()
	select {
	case <-time.After(spec.duration):
	case <-ctx.Done():
	case <-drained:
	}
	// Operations finishing after this instant are not counted: the window is exact.
	measuring.Store(false)
	elapsed := time.Since(start)
	self1 := selfCPU()
	if spec.serverPID != 0 {
		cpu1, _ = ReadProc(spec.serverPID)
	}
	stopped.Store(true)
	<-drained
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &phaseResult{Name: spec.name, Elapsed: elapsed, ErrKinds: map[string]int64{},
		ServerCPU: cpu1.CPU - cpu0.CPU, ClientCPU: self1 - self0}
	for _, st := range stats {
		res.Ops += st.ops
		res.Redeem = append(res.Redeem, st.redeem...)
		res.Activate = append(res.Activate, st.activate...)
		res.Errors += st.errors
		for k, n := range st.kinds {
			res.ErrKinds[k] += n
		}
		res.OutOfCodes = res.OutOfCodes || st.outOfCodes
	}
	slices.Sort(res.Redeem)
	slices.Sort(res.Activate)
	return res, nil
}

func (st *clientStats) loop(ctx context.Context, c caller, pool *codePool) {
	for !st.stopped.Load() && ctx.Err() == nil {
		code, ok := pool.take()
		if !ok {
			st.outOfCodes = true
			return
		}
		t0 := time.Now()
		name, err := c.redeem(ctx, code)
		t1 := time.Now()
		// A call is recorded if it ended inside the window; an operation if its second
		// call did.
		if err != nil {
			st.fail(st.measuring.Load(), ctx, "RedeemCode", err)
			continue
		}
		if st.measuring.Load() {
			st.redeem = append(st.redeem, t1.Sub(t0))
		}
		err = c.activate(ctx, name, "M-"+strings.TrimPrefix(name, "enrollments/"))
		t2 := time.Now()
		rec := st.measuring.Load()
		if err != nil {
			st.fail(rec, ctx, "ActivateEnrollment", err)
			continue
		}
		if rec {
			st.activate = append(st.activate, t2.Sub(t1))
			st.ops++
		}
	}
}

func (st *clientStats) fail(rec bool, ctx context.Context, call string, err error) {
	if ctx.Err() != nil || !rec {
		return
	}
	st.errors++
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Code().String() + ": " + s.Message()
	}
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	st.kinds[call+": "+msg]++
}

// grpcCaller talks to a server over its own gRPC connection, as one client would.
type grpcCaller struct {
	conn     *grpc.ClientConn
	redeemer enrollv1.RedemptionServiceClient
	partner  enrollv1.PartnerServiceClient
	authMD   metadata.MD
}

func newGRPCCaller(addr, token string) (caller, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &grpcCaller{conn: conn, redeemer: enrollv1.NewRedemptionServiceClient(conn), partner: enrollv1.NewPartnerServiceClient(conn),
		authMD: metadata.Pairs("authorization", "Bearer "+token)}, nil
}

func (c *grpcCaller) redeem(ctx context.Context, code string) (string, error) {
	resp, err := c.redeemer.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: code})
	if err != nil {
		return "", err
	}
	return resp.GetEnrollment().GetName(), nil
}

func (c *grpcCaller) activate(ctx context.Context, name, member string) error {
	resp, err := c.partner.ActivateEnrollment(metadata.NewOutgoingContext(ctx, c.authMD),
		&enrollv1.ActivateEnrollmentRequest{Name: name, MemberId: member})
	if err != nil {
		return err
	}
	if st := resp.GetEnrollment().GetState(); st != enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE {
		return fmt.Errorf("activate answered OK with state %s", st)
	}
	return nil
}

func (c *grpcCaller) close() { _ = c.conn.Close() }

// restCaller talks JSON over HTTP/1.1 with keep-alive, one connection per client.
type restCaller struct {
	base   string
	client *http.Client
	auth   string
	buf    bytes.Buffer
}

func newRESTCaller(addr, token string) caller {
	// One transport per client: its own keep-alive connection, as one browser or partner
	// integration would hold.
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true, IdleConnTimeout: time.Minute}
	return &restCaller{base: "http://" + addr, client: &http.Client{Transport: tr, Timeout: time.Minute}, auth: "Bearer " + token}
}

func (c *restCaller) post(ctx context.Context, path string, body any, auth bool, out any) error {
	c.buf.Reset()
	if err := json.NewEncoder(&c.buf).Encode(body); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(c.buf.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Message)
	}
	return json.Unmarshal(b, out)
}

func (c *restCaller) redeem(ctx context.Context, code string) (string, error) {
	var out struct {
		Enrollment struct {
			Name string `json:"name"`
		} `json:"enrollment"`
	}
	if err := c.post(ctx, "/v1/redemption:redeem", map[string]string{"code": code}, false, &out); err != nil {
		return "", err
	}
	if out.Enrollment.Name == "" {
		return "", fmt.Errorf("redeem answered 200 without an enrollment name")
	}
	return out.Enrollment.Name, nil
}

func (c *restCaller) activate(ctx context.Context, name, member string) error {
	var out struct {
		Enrollment struct {
			State string `json:"state"`
		} `json:"enrollment"`
	}
	if err := c.post(ctx, "/v1/"+name+":activate", map[string]string{"member_id": member}, true, &out); err != nil {
		return err
	}
	if out.Enrollment.State != "ENROLLMENT_STATE_ACTIVE" {
		return fmt.Errorf("activate answered 200 with state %q", out.Enrollment.State)
	}
	return nil
}

func (c *restCaller) close() { c.client.CloseIdleConnections() }

// errorKinds lists a phase's error kinds, most frequent first.
func errorKinds(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d × %s", m[k], k)
	}
	return out
}
