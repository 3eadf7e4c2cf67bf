// Package store persists the user service's data with gorm. Its schema is
// the embedded goose migrations in migrations/, written to run unchanged on
// SQLite and PostgreSQL.
package store

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the schema, for dbx.Migrate.
var Migrations = mustSub(migrationFiles, "migrations")

func mustSub(f embed.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at compile time
	}
	return sub
}
