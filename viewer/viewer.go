// Package viewer is the browser viewer of the messages server: static HTML,
// CSS and plain JavaScript modules, embedded in the binary and served by
// Handler.
//
// The viewer lists channels, starts generator streams, creates channels for
// manual publishing and watches a channel over the WebSocket protocol,
// resuming after a drop from the last sequence number it has shown. It needs
// nothing but the server it is served from: no CDN, no build step.
package viewer

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// static holds the viewer's files; it is read-only.
//
//go:embed static
var static embed.FS

// contentType is the Content-Type of a file with the given extension.
func contentType(ext string) string {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if ct := mime.TypeByExtension(ext); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// contentSecurityPolicy lets the page load only its own assets and talk
// only to its own origin (HTTP and WebSocket).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the index at "/" and the files under "/static/".
type handler struct {
	index  asset
	assets map[string]asset // by name relative to static/, e.g. "app.js"
}

// Handler returns the viewer's HTTP handler. It serves index.html at "/"
// and the assets at "/static/NAME", answers GET and HEAD only, never lists
// directories, and answers 404 for anything else. Responses carry an ETag
// and "Cache-Control: no-cache", so browsers revalidate cheaply and always
// run a matching set of files after an upgrade. The returned handler is safe
// for concurrent use.
func Handler() http.Handler {
	h := &handler{assets: make(map[string]asset)}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		h.assets[strings.TrimPrefix(p, "static/")] = asset{
			body:        body,
			contentType: contentType(path.Ext(p)),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic("viewer: read embedded files: " + err.Error())
	}
	index, ok := h.assets["index.html"]
	if !ok {
		panic("viewer: index.html is not embedded")
	}
	h.index = index
	return h
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	var a asset
	switch p := r.URL.Path; {
	case p == "/":
		a = h.index
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("Referrer-Policy", "no-referrer")
	case strings.HasPrefix(p, "/static/"):
		var ok bool
		a, ok = h.assets[strings.TrimPrefix(p, "/static/")]
		if !ok {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
	default:
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match with 304, HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// writeError answers with the server's JSON error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
