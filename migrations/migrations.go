// Package migrations holds the database schema as dbmate migrations, one
// directory per backend, embedded into the binary.
package migrations

import "embed"

// FS holds the migration files: postgres/*.sql for PostgreSQL and
// sqlite/*.sql for SQLite. The two directories describe the same schema and
// change together.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
