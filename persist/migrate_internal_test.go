package persist

import (
	"context"
	"testing"
	"time"
)

func TestMigrationURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"postgres://u:p@h:5433/db?sslmode=disable", []string{"postgres://u:p@h:5433/db?sslmode=disable"}},
		{"postgresql://h/db", []string{"postgresql://h/db?sslmode=require", "postgresql://h/db?sslmode=disable"}},
		{"postgres://h/db?sslmode=prefer&application_name=a", []string{
			"postgres://h/db?application_name=a&sslmode=require",
			"postgres://h/db?application_name=a&sslmode=disable",
		}},
		{"postgres://h/db?sslmode=allow", []string{"postgres://h/db?sslmode=disable"}},
		{"postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem", []string{"postgres://h/db?sslmode=verify-full&sslrootcert=%2Fca.pem"}},
		{"postgres://h/db?sslmode=disable&pool_max_conns=9&default_query_exec_mode=exec&search_path=s1",
			[]string{"postgres://h/db?search_path=s1&sslmode=disable"}},
	} {
		us, err := migrationURLs(context.Background(), tc.in)
		if err != nil {
			t.Fatalf("migrationURLs(%q): %v", tc.in, err)
		}
		var got []string
		for _, u := range us {
			got = append(got, u.String())
		}
		if len(got) != len(tc.want) {
			t.Fatalf("migrationURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("migrationURLs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	us, err := migrationURLs(ctx, "postgres://h/db?sslmode=disable")
	if err != nil || us[0].Query().Get("connect_timeout") != "3" {
		t.Fatalf("migrationURLs with a deadline = %v, %v; want connect_timeout=3", us, err)
	}
	for _, bad := range []string{"host=h dbname=db", "mysql://h/db", "://"} {
		if _, err := migrationURLs(context.Background(), bad); err == nil {
			t.Fatalf("migrationURLs(%q) succeeded, want an error", bad)
		}
	}
}
