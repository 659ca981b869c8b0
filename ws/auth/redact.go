package auth

import (
	"net/url"
	"strings"
)

// Redacted replaces secrets in what RedactQuery and RedactURL return.
const Redacted = "REDACTED"

// RedactQuery returns the raw query q with the value of every token
// parameter ("token", "access_token") replaced by REDACTED, keeping
// everything else byte for byte, for logging.
func RedactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	changed := false
	for i, p := range parts {
		raw, _, _ := strings.Cut(p, "=")
		k := raw
		if uk, err := url.QueryUnescape(raw); err == nil {
			k = uk
		}
		// Ours, and RFC 6750's name for it.
		if strings.EqualFold(k, "token") || strings.EqualFold(k, "access_token") {
			parts[i] = raw + "=" + Redacted
			changed = true
		}
	}
	if !changed {
		return q
	}
	return strings.Join(parts, "&")
}

// RedactURL returns u as a string for logging: token query parameters and
// any password are replaced by REDACTED. u is not modified.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.RawQuery = RedactQuery(c.RawQuery)
	if _, ok := c.User.Password(); ok {
		c.User = url.UserPassword(c.User.Username(), Redacted)
	}
	return c.String()
}

// RedactURLString is RedactURL for a URL or request URI in a string. A
// string that does not parse is redacted as a whole after its "?".
func RedactURLString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.IndexByte(s, '?'); i >= 0 {
			return s[:i+1] + Redacted
		}
		return s
	}
	return RedactURL(u)
}
