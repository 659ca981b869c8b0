package auth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// LoopbackHosts returns the Host allow-list for a server on loopback:
// localhost, 127.0.0.1 and [::1], any port.
func LoopbackHosts() []string { return []string{"localhost", "127.0.0.1", "[::1]"} }

// IsLoopback reports whether the listen address addr ("host:port") is on
// loopback only: localhost or a loopback IP. ":3000" and "0.0.0.0:3000"
// listen on every interface and are not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// HostList is a Host header allow-list against DNS rebinding: a page on
// another site whose name the attacker points at our address reaches us
// with its own name in Host. It is safe for concurrent use.
type HostList struct {
	any   bool
	hosts map[string]bool
	names []string
}

// NewHostList returns an allow-list of host names and IP addresses, each
// matched with any port, case-insensitively. IPv6 addresses are written
// "[::1]" (or "::1"). "*" allows every host. An empty list allows none.
func NewHostList(entries []string) (*HostList, error) {
	h := &HostList{hosts: make(map[string]bool)}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "*" {
			h.any = true
			h.names = append(h.names, e)
			continue
		}
		n, err := entryHost(e)
		if err != nil {
			return nil, err
		}
		if !h.hosts[n] {
			h.hosts[n] = true
			h.names = append(h.names, n)
		}
	}
	return h, nil
}

// entryHost normalizes an allow-list entry.
func entryHost(e string) (string, error) {
	if e == "" {
		return "", fmt.Errorf("auth: empty entry in the allowed hosts")
	}
	if ip, err := netip.ParseAddr(e); err == nil && ip.Is6() {
		e = "[" + e + "]" // a bare IPv6 address
	}
	n, port, ok := requestHost(e)
	if !ok || strings.ContainsAny(n, "/*?#@ ") {
		return "", fmt.Errorf("auth: allowed host %q is not a host name or IP address", e)
	}
	if port {
		return "", fmt.Errorf("auth: allowed host %q has a port; list the name alone, every port is allowed", e)
	}
	return n, nil
}

// requestHost normalizes a Host header value: the host without its port,
// lower case, without a trailing dot, IPv6 in brackets in canonical form.
// hasPort reports whether a port was given; ok is false for a value that
// is not a host.
func requestHost(v string) (host string, hasPort, ok bool) {
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return "", false, false
		}
		ip, err := netip.ParseAddr(v[1:end])
		if err != nil || !ip.Is6() {
			return "", false, false
		}
		rest := v[end+1:]
		if rest != "" && !validPort(rest) {
			return "", false, false
		}
		return "[" + ip.String() + "]", rest != "", true
	}
	if i := strings.IndexByte(v, ':'); i >= 0 {
		if !validPort(v[i:]) {
			return "", false, false
		}
		v, hasPort = v[:i], true
	}
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	if v == "" {
		return "", false, false
	}
	return v, hasPort, true
}

// validPort reports whether s is ":" followed by at most 5 digits.
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Allowed reports whether a request with this Host header value may be
// served.
func (h *HostList) Allowed(host string) bool {
	if h.any {
		return true
	}
	n, _, ok := requestHost(host)
	return ok && h.hosts[n]
}

// Hosts returns the normalized entries.
func (h *HostList) Hosts() []string { return append([]string(nil), h.names...) }

// Handler answers 421 Misdirected Request, with a JSON error, to requests
// whose Host is not allowed, and passes the others to next.
func (h *HostList) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allowed(r.Host) {
			writeJSONError(w, http.StatusMisdirectedRequest, hostMessage(r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hostMessage(host string) string {
	if host == "" {
		return "the request has no Host header; this server answers only for its allowed hosts"
	}
	return fmt.Sprintf("this server does not answer for host %q; add it to the allowed hosts if it should", host)
}
