package persist

import "testing"

func TestSQLitePath(t *testing.T) {
	for _, tc := range []struct {
		url, path, query string // path "": an error
	}{
		{"sqlite:./data/messages.db", "data/messages.db", ""},
		{"sqlite:data/messages.db", "data/messages.db", ""},
		{"sqlite:messages.db", "messages.db", ""},
		{"sqlite:/abs/path.db", "/abs/path.db", ""},
		{"sqlite:///abs/path.db", "/abs/path.db", ""},
		{"sqlite3:///abs/path.db", "/abs/path.db", ""},
		{"sqlite:///abs/with%20space%23.db", "/abs/with space#.db", ""},
		{"sqlite:rel/with%20space.db?_cache_size=-2000", "rel/with space.db", "_cache_size=-2000"},
		{"sqlite:", "", ""},
		{"sqlite://", "", ""},
		{"sqlite://host/path.db", "", ""},
		{"sqlite::memory:", "", ""},
		{"sqlite:file:x.db", "", ""},
		{"sqlite:///a%3Fb.db", "", ""},
	} {
		p, q, err := sqlitePath(tc.url)
		if tc.path == "" {
			if err == nil {
				t.Errorf("sqlitePath(%q) = %q, want an error", tc.url, p)
			}
			continue
		}
		if err != nil || p != tc.path || q.Encode() != tc.query {
			t.Errorf("sqlitePath(%q) = %q, %q, %v; want %q, %q", tc.url, p, q.Encode(), err, tc.path, tc.query)
		}
	}
}
