package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/airlock/airlock/sandbox/job"
	"golang.org/x/net/http/httpproxy"
)

// Fetch limits. The page is parsed in memory, so its size is capped like
// any content file, only lower: a fetched page is one document.
const (
	// MaxFetchBytes caps the fetched body; a larger page fails the task.
	MaxFetchBytes = 4 << 20
	// MaxRedirects is how many redirects fetch follows.
	MaxRedirects = 5
	// maxProxyMessageBytes caps the part of the proxy's refusal quoted on
	// stderr.
	maxProxyMessageBytes = 512
)

// fetchTimeout bounds a whole fetch, redirects and body included. It is a
// variable so tests can shorten it.
var fetchTimeout = 30 * time.Second

// egressHeader marks a response the Airlock egress proxy made up itself; it
// strips the header from upstream responses, so an origin cannot forge it.
// (egress.DeniedHeader, not imported to keep the agent binary small.)
const egressHeader = "Airlock-Egress"

// ErrEgressRefused is returned, wrapped, when the egress proxy refuses a
// fetch; the wrapping error carries the proxy's explanation.
var ErrEgressRefused = errors.New("egress proxy refused the fetch")

// ErrNoProxy is returned, wrapped, when no proxy is configured for the URL:
// fetch never connects directly, since the sandbox's only way out is the
// egress proxy.
var ErrNoProxy = errors.New("no egress proxy configured (HTTP_PROXY/HTTPS_PROXY)")

// ErrHTTPStatus is returned, wrapped, for a response that is not 2xx.
var ErrHTTPStatus = errors.New("unexpected HTTP status")

// FetchResult is the result of fetch.
type FetchResult struct {
	// URL is the page's URL after redirects.
	URL string `json:"url"`
	// Title is <title>, else the first h1, else the first line.
	Title string `json:"title"`
	// Text is the visible text, as extract_text gives it.
	Text string `json:"text"`
}

// fetchPage downloads params["url"] through the egress proxy and extracts
// its visible text. It reads no content files.
func fetchPage(params map[string]string, _ []document) (any, error) {
	u, err := job.ParseFetchURL(params["url"])
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	client := newFetchClient()
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", ErrBadParam, err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1")
	req.Header.Set("User-Agent", "airlock-agent")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.Header.Get(egressHeader) != "" {
		return nil, proxyRefusal(resp)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The status text is Go's, not the origin's: nothing from the
		// page reaches stderr.
		return nil, fmt.Errorf("%w: %d %s", ErrHTTPStatus, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(data) > MaxFetchBytes {
		return nil, fmt.Errorf("body: %w: over %d bytes", ErrTooLarge, MaxFetchBytes)
	}
	final := resp.Request.URL.String()
	if len(final) > MaxURLBytes {
		final = u.String()
	}
	doc, err := parseContent(data, ContentFile{MediaType: resp.Header.Get("Content-Type"), Source: final})
	if err != nil {
		return nil, err
	}
	docs := []document{doc}
	return FetchResult{URL: final, Title: title(docs), Text: truncateBytes(strings.Join(allLines(docs), "\n"), MaxTextBytes)}, nil
}

// newFetchClient goes through the proxy named by HTTP_PROXY or HTTPS_PROXY
// and nowhere else. The variables are read on each call, since
// http.ProxyFromEnvironment reads them only once per process; and unlike
// it, loopback and NO_PROXY are not exempt: inside the sandbox the proxy
// is the only route, and it decides what a loopback URL may reach.
func newFetchClient() *http.Client {
	return newProxyClient(fetchTimeout, func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return fmt.Errorf("stopped after %d redirects", MaxRedirects)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
		}
		return nil
	})
}

// newModelHTTPClient reaches the model's alias through the proxy. It
// follows no redirect: the model is one service, at one path.
func newModelHTTPClient() *http.Client {
	return newProxyClient(modelTimeout, func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse })
}

// newProxyClient is an HTTP client whose only route is the egress proxy.
func newProxyClient(headerTimeout time.Duration, redirect func(*http.Request, []*http.Request) error) *http.Client {
	env := httpproxy.FromEnvironment()
	tr := &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			raw := env.HTTPProxy
			if r.URL.Scheme == "https" {
				raw = env.HTTPSProxy
			}
			if raw == "" {
				return nil, fmt.Errorf("%w for %s", ErrNoProxy, r.URL.Redacted())
			}
			if !strings.Contains(raw, "://") {
				raw = "http://" + raw
			}
			return url.Parse(raw)
		},
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			return proxyRefusal(resp)
		},
		DisableKeepAlives:      true, // one page, one connection
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  headerTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, CheckRedirect: redirect}
}

// proxyRefusal turns a response made by the egress proxy into an error
// carrying its first line of explanation, printable ASCII only.
func proxyRefusal(resp *http.Response) error {
	var msg string
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxProxyMessageBytes))
		line, _, _ := strings.Cut(string(b), "\n")
		msg = strings.Map(func(r rune) rune {
			if r < ' ' || r > '~' {
				return -1
			}
			return r
		}, line)
	}
	if msg == "" {
		msg = "no explanation given"
	}
	return fmt.Errorf("%w: %d %s: %s", ErrEgressRefused, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
}
