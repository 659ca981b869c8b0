// Package migrations holds the database schema as dbmate migrations, one
// directory per backend, embedded into the binary.
package migrations

import "embed"

// FS holds the migration files: postgres/*.sql for PostgreSQL.
//
//go:embed postgres/*.sql
var FS embed.FS
