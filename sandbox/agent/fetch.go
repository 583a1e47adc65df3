package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/airlock/airlock/sandbox/job"
	"golang.org/x/net/http/httpproxy"
)

// Fetch limits. The page is parsed in memory, so its size is capped like
// any content file, only lower (job.MaxFetchBytes): a fetched page is one
// document.
const (
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
	f, err := fetchURL(params["url"], fetchTimeout)
	if err != nil {
		return nil, err
	}
	doc, err := parseContent(f.data, ContentFile{MediaType: f.mediaType, Source: f.url})
	if err != nil {
		return nil, err
	}
	docs := []document{doc}
	return FetchResult{URL: f.url, Title: title(docs), Text: truncateBytes(strings.Join(allLines(docs), "\n"), MaxTextBytes)}, nil
}

// fetched is one URL's body, what it said it is, and where it ended up.
type fetched struct {
	data      []byte
	mediaType string
	url       string
}

// ErrFetchTimeout is returned, wrapped, when a fetch runs past its bound.
var ErrFetchTimeout = errors.New("fetch timed out")

// ErrMediaType is returned, wrapped, for a response of a type the agent
// does not read.
var ErrMediaType = errors.New("unreadable media type")

// fetchURL downloads raw through the egress proxy, within timeout,
// job.MaxFetchBytes and MaxRedirects, and only a text type the agent reads. It
// is the fetch tool's and the content URLs' one way to the network.
func fetchURL(raw string, timeout time.Duration) (fetched, error) {
	u, err := job.ParseFetchURL(raw)
	if err != nil {
		return fetched{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := newFetchClient()
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fetched{}, fmt.Errorf("%w: url: %v", ErrBadParam, err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,application/json;q=0.8")
	req.Header.Set("User-Agent", "airlock-agent")
	timedOut := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w after %s", ErrFetchTimeout, timeout)
		}
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var refused *url.Error
		if errors.As(err, &refused) && errors.Is(refused.Err, ErrEgressRefused) {
			return fetched{}, refused.Err
		}
		return fetched{}, timedOut(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get(egressHeader) != "" {
		return fetched{}, proxyRefusal(resp)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The status text is Go's, not the origin's: nothing from the
		// page reaches stderr.
		return fetched{}, fmt.Errorf("%w: %d %s", ErrHTTPStatus, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	mediaType := resp.Header.Get("Content-Type")
	if !readableType(mediaType) {
		return fetched{}, fmt.Errorf("%w: the response is not text, HTML, Markdown or JSON", ErrMediaType)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, job.MaxFetchBytes+1))
	if err != nil {
		return fetched{}, timedOut(fmt.Errorf("read body: %w", err))
	}
	if len(data) > job.MaxFetchBytes {
		return fetched{}, fmt.Errorf("body: %w: over %d bytes", ErrTooLarge, job.MaxFetchBytes)
	}
	final := resp.Request.URL.String()
	if len(final) > MaxURLBytes {
		final = u.String()
	}
	return fetched{data: data, mediaType: mediaType, url: final}, nil
}

// readableType says whether the agent reads a body of this Content-Type:
// text of any kind, HTML and XHTML, and JSON. A response without one is
// read as its bytes look.
func readableType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/xhtml+xml" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// fetchContentURL is fetchURL; tests watch the time each fetch is given.
var fetchContentURL = fetchURL

// fetchContent fetches every content item that names a URL, before the
// task reads anything, all within the job's fetch timeout, and returns read with the fetched bodies served by
// their items' names. An item without a media type takes the response's,
// and its source becomes where the fetch ended, for resolving its links.
func fetchContent(j *Job, read func(string) ([]byte, error)) (func(string) ([]byte, error), error) {
	timeout := fetchTimeout
	if t := time.Duration(j.FetchTimeoutMillis) * time.Millisecond; t > 0 && t < timeout {
		timeout = t
	}
	// One deadline for every fetch: a job of several slow URLs is a fetch
	// failure, not a job killed at its own deadline.
	deadline := time.Now().Add(timeout)
	bodies := map[string][]byte{}
	for i, c := range j.Content {
		if c.URL == "" {
			continue
		}
		if err := checkContentName(c.Name); err != nil {
			return nil, err
		}
		f, err := fetchContentURL(c.URL, time.Until(deadline))
		if err != nil {
			return nil, fmt.Errorf("%w: content %q: %w", ErrFetch, c.Name, err)
		}
		bodies[c.Name] = f.data
		if c.MediaType == "" {
			j.Content[i].MediaType = f.mediaType
		}
		j.Content[i].Source = f.url
	}
	if len(bodies) == 0 {
		return read, nil
	}
	return func(name string) ([]byte, error) {
		if b, ok := bodies[name]; ok {
			return b, nil
		}
		return read(name)
	}, nil
}

// ErrFetch is returned, wrapped, when a content URL cannot be fetched.
var ErrFetch = errors.New("content url not fetched")

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
