package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

var errNoProxy = errors.New("no proxy: HTTP_PROXY is unset")

// proxyURL is the egress proxy named by HTTP_PROXY (or http_proxy).
func proxyURL() (*url.URL, error) {
	v := os.Getenv("HTTP_PROXY")
	if v == "" {
		v = os.Getenv("http_proxy")
	}
	if v == "" {
		return nil, errNoProxy
	}
	if !strings.Contains(v, "://") {
		v = "http://" + v
	}
	return url.Parse(v)
}

func httpGet(_ *attacker, s step) outcome {
	return httpDo(s, http.MethodGet, nil)
}

func httpPost(_ *attacker, s step) outcome {
	return httpDo(s, http.MethodPost, strings.NewReader(s.str("body")))
}

// httpDo sends one request to "url", through the proxy when "via_proxy"
// is true and directly otherwise, and follows no redirect. It is ok on a
// 2xx response. A 403 from the proxy, to the request or to its CONNECT,
// sets DeniedByProxy.
//
// The proxy is always used when asked for: http.ProxyFromEnvironment would
// skip it for loopback targets, which are exactly what the SSRF payloads
// aim at.
func httpDo(s step, method string, body io.Reader) outcome {
	var o outcome
	viaProxy := s.bool("via_proxy")
	tr := &http.Transport{DisableKeepAlives: true}
	connectStatus := 0
	if viaProxy {
		u, err := proxyURL()
		if err != nil {
			o.fail(err)
			return o
		}
		tr.Proxy = http.ProxyURL(u)
		tr.OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
			connectStatus = res.StatusCode
			return nil
		}
	}
	client := &http.Client{
		Transport:     tr,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(method, s.str("url"), body)
	if err != nil {
		o.fail(err)
		return o
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := client.Do(req)
	if err != nil {
		o.fail(err)
		o.Status = connectStatus
		o.DeniedByProxy = connectStatus == http.StatusForbidden
		return o
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRead))
	o.Status = resp.StatusCode
	o.DeniedByProxy = viaProxy && resp.StatusCode == http.StatusForbidden
	o.Bytes, o.data = int64(len(data)), string(data)
	switch {
	case err != nil:
		o.fail(err)
	case resp.StatusCode/100 != 2:
		o.Error = resp.Status
	default:
		o.OK = true
	}
	return o
}

// connectTCP dials host:port directly, whatever "bypass_proxy" says, and
// sends a line if it got through.
func connectTCP(_ *attacker, s step) outcome {
	var o outcome
	c, err := net.DialTimeout("tcp", net.JoinHostPort(s.str("host"), s.str("port")), 3*time.Second)
	if err != nil {
		o.fail(err)
		return o
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	n, err := io.WriteString(c, "hostile\n")
	o.Bytes = int64(n)
	o.done(err)
	return o
}

// dnsQuery sends one A query for "name" to "server" (port "port", 53 by
// default) over UDP. It is ok only if a response arrives within 2 s.
func dnsQuery(_ *attacker, s step) outcome {
	var o outcome
	port := s.str("port")
	if port == "" {
		port = "53"
	}
	const id = 0x4149
	c, err := net.DialTimeout("udp", net.JoinHostPort(s.str("server"), port), 2*time.Second)
	if err != nil {
		o.fail(err)
		return o
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(dnsPacket(id, s.str("name"))); err != nil {
		o.fail(err)
		return o
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	o.Bytes = int64(n)
	switch {
	case err != nil:
		o.fail(err)
	case n < 12 || buf[0] != id>>8 || buf[1] != id&0xff || buf[2]&0x80 == 0:
		o.Error = "not a DNS response"
	default:
		o.OK = true
	}
	return o
}

// dnsPacket is a standard query for name's A record, recursion desired. A
// label longer than DNS allows (63 bytes) is split into several.
func dnsPacket(id uint16, name string) []byte {
	p := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(strings.Trim(name, "."), ".") {
		for label != "" {
			part := label[:min(len(label), 63)]
			label = label[len(part):]
			p = append(p, byte(len(part)))
			p = append(p, part...)
		}
	}
	return append(p, 0, 0, 1, 0, 1) // root label, QTYPE A, QCLASS IN
}

// rawProxyRequest writes "request" as is to the proxy and reads the status
// line of its answer. It is ok on a 2xx status.
func rawProxyRequest(_ *attacker, s step) outcome {
	var o outcome
	addr, err := proxyAddr()
	if err != nil {
		o.fail(err)
		return o
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		o.fail(err)
		return o
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	n, err := io.WriteString(c, s.str("request"))
	o.Bytes = int64(n)
	if err != nil {
		o.fail(err)
		return o
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		o.fail(err)
		return o
	}
	line = strings.TrimSpace(line)
	f := strings.Fields(line)
	if len(f) >= 2 {
		o.Status, _ = strconv.Atoi(f[1])
	}
	// Only the proxy answers here, so any 4xx is its refusal: a 400 for a
	// malformed or ambiguous request, a 403 for policy.
	o.DeniedByProxy = o.Status >= 400 && o.Status < 500
	if o.OK = o.Status/100 == 2; !o.OK {
		o.Error = line
	}
	return o
}

// proxyAddr is the proxy's host:port, port 80 when the URL names none.
func proxyAddr() (string, error) {
	u, err := proxyURL()
	if err != nil {
		return "", err
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

// icmpEcho sends one ICMP echo request to "host" from an unprivileged ping
// socket, the one way to ICMP without CAP_NET_RAW. It is ok only if the
// reply arrives within 2 s; detail.stage says how far it got.
func icmpEcho(_ *attacker, s step) outcome {
	var o outcome
	stage := "socket"
	defer func() { o.Detail = map[string]any{"stage": stage} }()
	c, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		o.fail(err)
		return o
	}
	defer c.Close()
	msg, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x4149, Seq: 1, Data: []byte("hostile")}}).Marshal(nil)
	if err != nil {
		o.fail(err)
		return o
	}
	stage = "send"
	ip, err := net.ResolveIPAddr("ip4", s.str("host"))
	if err != nil {
		o.fail(err)
		return o
	}
	if _, err := c.WriteTo(msg, &net.UDPAddr{IP: ip.IP}); err != nil {
		o.fail(err)
		return o
	}
	stage = "reply"
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, _, err := c.ReadFrom(buf)
	o.Bytes = int64(n)
	if err != nil {
		o.fail(err)
		return o
	}
	if m, err := icmp.ParseMessage(1, buf[:n]); err != nil || m.Type != ipv4.ICMPTypeEchoReply {
		o.Error = "not an echo reply"
		return o
	}
	stage = "answered"
	o.OK = true
	return o
}
