package web_test

// The redemption page as a person uses it: Debian's Chromium, driven over the DevTools
// protocol by chromedp, against the real server (servertest: the same wiring as enrolld) on
// loopback, seeded with the demo incident through the API. Screenshots of each step go to
// $ENROLL_SCREENSHOTS_DIR, or a folder under the system's temp dir (logged), so that a test
// run does not rewrite the committed docs/screenshots; `make screenshots` refreshes those.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// t0 is the server's (fake) clock. A fixed instant keeps the dates on the screenshots stable.
var t0 = time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)

// stepTimeout bounds each step; the whole test runs in well under a minute.
const stepTimeout = 20 * time.Second

// chromium returns the browser to drive. Without it the test skips, except in CI, where a
// missing browser must fail the build rather than silently drop the test.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test: %s not found (%v); CI must run it: apt-get install -y chromium", chromiumPath, err)
		}
		t.Skipf("browser test skipped: %s not found; install Debian's chromium (apt-get install -y chromium) to run it", chromiumPath)
	}
	return chromiumPath
}

// isLoopback reports whether a URL the page requested stays on this machine.
func isLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "data", "blob", "about":
		// Never leave the page's process.
		return true
	case "http", "https", "ws", "wss":
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		"http://127.0.0.1:8080/":               true,
		"http://localhost:1/assets/app.js":     true,
		"http://[::1]:80/":                     true,
		"data:image/png;base64,AAAA":           true,
		"https://fonts.googleapis.com/css":     false,
		"https://partner.example/enroll":       false,
		"http://10.0.0.1/":                     false,
		"http://127.0.0.1.evil.example/":       false,
		"ws://example.com/socket":              false,
		"chrome-extension://abc/x.js":          false,
		"http://localhost.evil.example:8080/x": false,
	} {
		if got := isLoopback(raw); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", raw, got, want)
		}
	}
}

type seenRequest struct{ url, method, referer string }

type seenResponse struct {
	url        string
	status     int64
	retryAfter string
}

// browserLog collects what the page did, from the DevTools event stream.
type browserLog struct {
	mu        sync.Mutex
	requests  []seenRequest
	responses []seenResponse
	problems  []string
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// listen runs on chromedp's read loop: it only records.
func (l *browserLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		l.requests = append(l.requests, seenRequest{url: e.Request.URL, method: e.Request.Method, referer: header(e.Request.Headers, "Referer")})
	case *network.EventResponseReceived:
		l.responses = append(l.responses, seenResponse{url: e.Response.URL, status: e.Response.Status, retryAfter: header(e.Response.Headers, "Retry-After")})
		if header(e.Response.Headers, "Set-Cookie") != "" {
			l.problems = append(l.problems, "a cookie was set by "+e.Response.URL)
		}
	case *runtime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
		l.problems = append(l.problems, "uncaught exception: "+msg)
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
			l.problems = append(l.problems, fmt.Sprintf("console.%s from the page", e.Type))
		}
	case *cdplog.EventEntryAdded:
		// Network errors are the API's expected 404 and 429 answers; anything else at error
		// level (a CSP violation, a Trusted Types violation) is a defect of the page.
		if e.Entry.Level == cdplog.EntryLevelError && e.Entry.Source != cdplog.EntrySourceNetwork {
			l.problems = append(l.problems, fmt.Sprintf("browser log (%s): %s", e.Entry.Source, e.Entry.Text))
		}
	}
}

func (l *browserLog) countRequests(path string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.requests {
		if u, err := url.Parse(r.url); err == nil && u.Path == path {
			n++
		}
	}
	return n
}

func (l *browserLog) responsesTo(path string) []seenResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seenResponse
	for _, r := range l.responses {
		if u, err := url.Parse(r.url); err == nil && u.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// page is one browser tab on the server under test.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
	log  *browserLog
	dir  string
}

func openPage(t *testing.T, base string) *page {
	t.Helper()
	exe := chromium(t)
	p := &page{t: t, base: base, log: &browserLog{}, dir: screenshotDir(t)}
	// A fresh profile, removed with retries: Chromium's child processes can still write to
	// it for a moment after the browser exits, which would fail t.TempDir's cleanup.
	profile, err := os.MkdirTemp("", "enroll-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(412, 915),
		chromedp.Env("TZ=UTC", "LANG=en_US.UTF-8"),
	)
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithListener(p.log.listen))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	p.ctx = ctx
	// The first Run starts the browser; it must not carry a timeout (that would bound the
	// browser's whole life). A phone-sized screen, UTC and US English make the screenshots
	// repeatable.
	err = chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "UTC"}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, tg, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: "en_US"}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: 412, Height: 915, DeviceScaleFactor: 1, Mobile: true,
			})
			return err
		}),
	)
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return p
}

func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ENROLL_SCREENSHOTS_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "enroll-screenshots")
	}
	t.Logf("screenshots of each step: %s", dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot folder: %v", err)
	}
	return dir
}

// do runs one step's actions, bounded by stepTimeout.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\nbrowser problems: %v", what, err, p.log.problems)
	}
}

func run[T any](p *page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return run(p, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (p *page) eval(expr string) string {
	p.t.Helper()
	return run(p, expr, chromedp.Evaluate[string](expr))
}

func (p *page) attr(sel, name string) string {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`document.querySelector(%q).getAttribute(%q) || ""`, sel, name))
}

func (p *page) shot(name string) {
	p.t.Helper()
	png := run(p, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(p.dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatalf("write screenshot: %v", err)
	}
}

func (p *page) open() {
	p.t.Helper()
	p.do("open the page", chromedp.Navigate(p.base+"/"), chromedp.WaitVisible(chromedp.CSS("#code")))
}

// typeCode replaces whatever is in the code field, key by key, as a person would.
func (p *page) typeCode(s string) {
	p.t.Helper()
	n := len([]rune(p.eval(`document.getElementById("code").value`)))
	p.do("type a code", chromedp.SendKeys(chromedp.CSS("#code"), strings.Repeat(kb.Backspace, n)+s))
	if got := p.eval(`document.getElementById("code").value`); got != s {
		p.t.Fatalf("code field holds %q after typing %q", got, s)
	}
}

func (p *page) wantText(sel string, fragments ...string) string {
	p.t.Helper()
	got := p.text(sel)
	for _, f := range fragments {
		if !strings.Contains(strings.ToLower(got), strings.ToLower(f)) {
			p.t.Fatalf("%s says %q; want it to mention %q", sel, got, f)
		}
	}
	return got
}

func (p *page) wantFocus(id string) {
	p.t.Helper()
	if got := p.eval(`document.activeElement ? document.activeElement.id : ""`); got != id {
		p.t.Errorf("focus is on #%s, want #%s", got, id)
	}
}

// sloppy is how a person might type a code: lower case, spaces instead of hyphens, the
// letter o for zero and l for one.
func sloppy(code string) string {
	s := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	return strings.NewReplacer("0", "o", "1", "l").Replace(s)
}

// typo changes one symbol of the code: the check symbol catches every such mistake.
func typo(code string) string {
	b := []byte(code)
	i := 5 // the first symbol of the second group
	j := strings.IndexByte(codes.Alphabet, b[i])
	b[i] = codes.Alphabet[(j+7)%len(codes.Alphabet)]
	return string(b)
}

func TestRedemptionPageInBrowser(t *testing.T) {
	t.Parallel()
	chromium(t) // skip (or fail in CI) before starting anything
	srv := servertest.Start(t, gormtest.SQLite(t), t0, func(c *config.Config) {
		// Low enough to reach in a few tries, so the page's 429 message is exercised.
		c.LimitCodeFailuresPerAddress = "3/1h"
	})
	seeded, err := demo.Seed(context.Background(), srv.Conn, srv.AdminID, srv.AdminSecret)
	if err != nil {
		t.Fatal(err)
	}
	// APP-0003 is one person in two cohorts: credit applicants (freeze your credit) and
	// postpaid customers (change your PIN).
	var code string
	for _, c := range seeded.Codes {
		if c.ExternalRef == "APP-0003" {
			code = c.Code
		}
	}
	if code == "" {
		t.Fatalf("demo seed issued no code for APP-0003: %+v", seeded.Codes)
	}
	compact := strings.ReplaceAll(code, "-", "")

	p := openPage(t, srv.HTTPBase)
	p.open()
	if title := p.eval(`document.title`); !strings.Contains(title, "Redeem") {
		t.Errorf("page title %q", title)
	}
	p.shot("01-enter-code")

	// The client-side check is the server's: compare them on the spec's vectors, typos and
	// random codes.
	checkAgainstGo(t, p)

	// 1. A typo: the page says "check the code" at once, without asking the server.
	checksBefore := p.log.countRequests("/v1/redemption:check")
	p.typeCode(sloppy(typo(code)))
	p.do("submit the typo", chromedp.SendKeys(chromedp.CSS("#code"), kb.Enter), chromedp.WaitVisible(chromedp.CSS("#code-error")))
	p.wantText("#code-error", "check the code", "mistyped")
	if p.attr("#code", "aria-invalid") != "true" || !strings.Contains(p.attr("#code", "aria-describedby"), "code-error") {
		t.Errorf("the error is not tied to the field: aria-invalid=%q aria-describedby=%q", p.attr("#code", "aria-invalid"), p.attr("#code", "aria-describedby"))
	}
	p.wantFocus("code")
	if n := p.log.countRequests("/v1/redemption:check"); n != checksBefore {
		t.Errorf("a code with a wrong check symbol was sent to the server (%d check calls)", n-checksBefore)
	}
	p.shot("02-typo")

	// 2. Fixed (still typed sloppily): the offer for both of the person's cohorts.
	p.typeCode(sloppy(code))
	p.do("submit the code", chromedp.SendKeys(chromedp.CSS("#code"), kb.Enter), chromedp.WaitVisible(chromedp.CSS("#offer")))
	if p.eval(`String(document.getElementById("code-error").hidden)`) != "true" {
		t.Error("the typo message is still shown after the code was fixed")
	}
	redeemBy := t0.AddDate(0, 0, 180).Format("January 2, 2006")
	p.wantText("#offer", "24 months", "Demo Monitoring Co.", redeemBy, "credit freeze", "account PIN", "Social Security number", code)
	p.wantFocus("offer-title")
	p.shot("03-offer")

	// 3. Redeem: what happens next, and the partner's link (no code in it).
	p.do("redeem", chromedp.Click(chromedp.CSS("#redeem-button")), chromedp.WaitVisible(chromedp.CSS("#done")))
	p.wantText("#done", "waiting for you to finish", t0.AddDate(0, 0, 30).Format("January 2, 2006"), "Continue to Demo Monitoring Co.")
	p.wantFocus("done-title")
	next := p.attr("#done-next", "href")
	if !strings.HasPrefix(next, "https://partner.example/enroll?enrollment=enrollments%2F") || strings.Contains(strings.ToUpper(next), compact) {
		t.Errorf("next-step link %q", next)
	}
	if rel := p.attr("#done-next", "rel"); !strings.Contains(rel, "noreferrer") {
		t.Errorf("next-step link rel=%q, want noreferrer", rel)
	}
	p.shot("04-redeemed")

	// 4. The same code again, on a fresh page: the status page.
	p.open()
	p.typeCode(code)
	p.do("submit the redeemed code", chromedp.Click(chromedp.CSS("#check-button")), chromedp.WaitVisible(chromedp.CSS("#status")))
	p.wantText("#status", "already been redeemed", "Code status", "Redeemed", "Enrollment status", "Finish enrollment by", "Continue to Demo Monitoring Co.")
	if strings.Contains(p.text("#status"), "..") {
		t.Errorf("status page has a doubled full stop: %q", p.text("#status"))
	}
	p.wantFocus("status-title")
	p.shot("05-status")

	// 4b. A code redeemed elsewhere (another tab, another device) while its offer is shown:
	// the Redeem button leads to the status page, not to an error.
	var other string
	for _, c := range seeded.Codes {
		if c.ExternalRef == "APP-0001" {
			other = c.Code
		}
	}
	p.open()
	p.typeCode(other)
	p.do("show the second offer", chromedp.SendKeys(chromedp.CSS("#code"), kb.Enter), chromedp.WaitVisible(chromedp.CSS("#offer")))
	resp, err := http.Post(srv.HTTPBase+"/v1/redemption:redeem", "application/json", strings.NewReader(`{"code":"`+other+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem behind the page's back: HTTP %d", resp.StatusCode)
	}
	p.do("redeem a code redeemed meanwhile", chromedp.Click(chromedp.CSS("#redeem-button")), chromedp.WaitVisible(chromedp.CSS("#status")))
	p.wantText("#status", "already been redeemed")
	if rs := p.log.responsesTo("/v1/redemption:redeem"); len(rs) != 2 || rs[1].status != http.StatusConflict {
		t.Errorf("redeem answers seen by the page: %+v, want a 200 and then a 409", rs)
	}

	// 5. Lost code: the same answer for someone on the list and someone who is not.
	p.open()
	p.do("open the lost-code form", chromedp.Click(chromedp.CSS("#lost-link")), chromedp.WaitVisible(chromedp.CSS("#lost-last-name")))
	p.wantFocus("lost-title")
	answers := make([]string, 0, 2)
	for _, who := range [][4]string{{"Rivera", "1984-03-12", "6001", "98101"}, {"Nobody", "1970-01-01", "0000", "00000"}} {
		p.do("fill the lost-code form",
			chromedp.SendKeys(chromedp.CSS("#lost-last-name"), who[0]),
			chromedp.SendKeys(chromedp.CSS("#lost-dob"), who[1]),
			chromedp.SendKeys(chromedp.CSS("#lost-ssn"), who[2]),
			chromedp.SendKeys(chromedp.CSS("#lost-zip"), who[3]),
			chromedp.Click(chromedp.CSS("#lost-button")),
			// The form is cleared once the answer is shown.
			chromedp.Poll[chromedp.Void](`!document.getElementById("lost-answer").hidden && document.getElementById("lost-last-name").value === ""`,
				chromedp.WithPollingTimeout(stepTimeout)),
		)
		answers = append(answers, p.wantText("#lost-answer", "If these details match"))
		if len(answers) == 1 {
			p.shot("06-lost-code")
		}
	}
	if answers[0] != answers[1] {
		t.Errorf("lost-code answers differ: %q vs %q", answers[0], answers[1])
	}

	// 6. Too many unknown codes from one address: a human message with the wait time.
	p.open()
	var got429 bool
	notFound := 0
	for try := 1; try <= 6 && !got429; try++ {
		unknown, err := codes.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		before := len(p.log.responsesTo("/v1/redemption:check"))
		p.typeCode(unknown.String())
		p.do("submit an unknown code", chromedp.SendKeys(chromedp.CSS("#code"), kb.Enter))
		var resp seenResponse
		for deadline := time.Now().Add(stepTimeout); ; time.Sleep(20 * time.Millisecond) {
			if rs := p.log.responsesTo("/v1/redemption:check"); len(rs) > before {
				resp = rs[len(rs)-1]
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no answer to the check call")
			}
		}
		switch resp.status {
		case 404:
			notFound++
			p.do("see not found", chromedp.WaitVisible(chromedp.CSS("#code-error")))
			p.wantText("#code-error", "could not find this code")
		case 429:
			got429 = true
			p.do("see the rate-limit message", chromedp.WaitVisible(chromedp.CSS("#announce")))
			msg := p.wantText("#announce", "Too many attempts", "please wait")
			if want := waitText(t, resp.retryAfter); !strings.Contains(msg, want) {
				t.Errorf("rate-limit message %q does not say %q (Retry-After %q)", msg, want, resp.retryAfter)
			}
			p.shot("07-rate-limited")
		default:
			t.Fatalf("check of an unknown code: HTTP %d", resp.status)
		}
	}
	if !got429 || notFound == 0 {
		t.Fatalf("want some 404s then a 429; got %d not-found, 429=%v", notFound, got429)
	}

	if c := p.eval(`document.cookie`); c != "" {
		t.Errorf("the page has cookies: %q", c)
	}
	if n := p.eval(`String(localStorage.length + sessionStorage.length)`); n != "0" {
		t.Errorf("the page stored %s items in web storage", n)
	}

	// Nothing left the machine, and the code never travelled in a URL or a Referer.
	p.log.mu.Lock()
	defer p.log.mu.Unlock()
	if len(p.log.requests) < 10 {
		t.Fatalf("only %d requests seen; the network listener is not working", len(p.log.requests))
	}
	for _, r := range p.log.requests {
		if !isLoopback(r.url) {
			t.Errorf("the page requested %s %s, outside loopback", r.method, r.url)
		}
		for _, s := range []string{r.url, r.referer} {
			norm := strings.ToUpper(strings.NewReplacer("-", "", "%2D", "", "%2d", "").Replace(s))
			if strings.Contains(norm, compact) {
				t.Errorf("the code appeared in a URL or Referer: %s %s (Referer %q)", r.method, r.url, r.referer)
			}
		}
		if strings.Contains(r.url, "/v1/redemption:") && r.method != "POST" {
			t.Errorf("redemption API called with %s: %s", r.method, r.url)
		}
	}
	for _, pr := range p.log.problems {
		t.Errorf("browser: %s", pr)
	}
}

// waitText is what the page should say for a Retry-After value (see waitText in app.js).
func waitText(t *testing.T, retryAfter string) string {
	t.Helper()
	var s int
	if _, err := fmt.Sscan(retryAfter, &s); err != nil || s <= 0 {
		t.Fatalf("429 without a usable Retry-After: %q", retryAfter)
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%d second", s)
	case s < 3600:
		return fmt.Sprintf("%d minute", (s+59)/60)
	default:
		return fmt.Sprintf("%d hour", s/3600)
	}
}

// jsParse is EnrollCode.parse's answer.
type jsParse struct {
	OK    bool   `json:"ok"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// checkAgainstGo runs the page's EnrollCode.parse on many inputs and compares each answer
// with codes.Parse: the same verdict, the same kind of error, the same normalised code.
func checkAgainstGo(t *testing.T, p *page) {
	t.Helper()
	vectors := []string{"0000-0000-0000-001Y", "0123-4567-89AB-CDEZ", "ABCD-EFGH-JKMN-PQRM", "ZZZZ-ZZZZ-ZZZZ-ZZZF", "7M3K-X9Q2-VRT5-N8HH"}
	inputs := []string{"", "-", "0000-0000-0000-001", "0000-0000-0000-001Y0", "0000-0000-0000-001U",
		"0000\u00a00000\u20030000\u3000001y", "0000\u00850000-0000-001Y", "0000\ufeff0000-0000-001Y",
		"ıooo-oooo-oooo-oolY", "0000-0000-0000-001Ÿ", "0000_0000_0000_001Y", "😀000-0000-0000-001Y",
		"\t0000 0000 0000 001y\n", "O0Oo-iIlL-0000-001Y", "0000-0000-0000-001Y-"}
	for _, v := range vectors {
		inputs = append(inputs, v, strings.ToLower(v), sloppy(v), strings.ReplaceAll(v, "-", ""), typo(v))
		// Every single-symbol change and every swap of neighbours.
		c := []byte(strings.ReplaceAll(v, "-", ""))
		for i := range c {
			for _, s := range []byte("07AZ") {
				m := append([]byte(nil), c...)
				m[i] = s
				inputs = append(inputs, string(m))
			}
			if i+1 < len(c) {
				m := append([]byte(nil), c...)
				m[i], m[i+1] = m[i+1], m[i]
				inputs = append(inputs, string(m))
			}
		}
	}
	for range 200 {
		c, err := codes.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, c.String(), sloppy(c.String()), typo(c.String()))
	}
	raw, err := json.Marshal(inputs)
	if err != nil {
		t.Fatal(err)
	}
	got := run(p, "EnrollCode.parse", chromedp.Evaluate[[]jsParse](fmt.Sprintf(`%s.map((s) => EnrollCode.parse(s))`, raw)))
	if len(got) != len(inputs) {
		t.Fatalf("EnrollCode.parse answered %d of %d inputs", len(got), len(inputs))
	}
	for _, v := range vectors {
		if _, err := codes.Parse(v); err != nil {
			t.Fatalf("spec vector %s: %v", v, err)
		}
	}
	valid, bad := 0, 0
	for i, in := range inputs {
		c, err := codes.Parse(in)
		want := jsParse{OK: err == nil, Code: c.String()}
		switch {
		case err == nil:
			valid++
		case errors.Is(err, codes.ErrCharacter):
			want.Error = "character"
		case errors.Is(err, codes.ErrLength):
			want.Error = "length"
		case errors.Is(err, codes.ErrCheckSymbol):
			want.Error = "check"
		default:
			t.Fatalf("codes.Parse(%q): unexpected error %v", in, err)
		}
		if err != nil {
			bad++
		}
		if got[i] != want {
			t.Errorf("EnrollCode.parse(%q) = %+v; codes.Parse says %+v", in, got[i], want)
		}
	}
	if valid < 200 || bad < 200 {
		t.Fatalf("cross-check too thin: %d valid and %d invalid inputs", valid, bad)
	}
	t.Logf("EnrollCode.parse agrees with codes.Parse on %d inputs (%d valid, %d invalid)", len(inputs), valid, bad)
}
