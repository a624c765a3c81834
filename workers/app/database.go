package app

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/config"
)

// NewDB returns the pool of the worker's PostgreSQL (its state, and the
// PostgreSQL destinations). It does not connect: at the app's start, an
// OnStart hook checks PostgreSQL answers and migrates tether's tables
// (bounded by temporal.connect_timeout). Many workers may start at once:
// migrations take an advisory lock.
func NewDB(lc fx.Lifecycle, cfg config.Config, log *slog.Logger) (*sql.DB, error) {
	db, err := postgres.Pool(cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("database (database.url / DATABASE_URL) %s: %w", cfg.Database.Redacted(), err)
	}
	db.SetMaxOpenConns(cfg.Database.MaxOpenConns)
	db.SetMaxIdleConns(cfg.Database.MaxOpenConns)
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Temporal.ConnectTimeout)
			defer cancel()
			if err := postgres.Ping(ctx, db, cfg.Database.URL); err != nil {
				return fmt.Errorf("database (database.url / DATABASE_URL): %w", err)
			}
			if err := store.Migrate(ctx, db); err != nil {
				return fmt.Errorf("database %s: migrate: %w", cfg.Database.Redacted(), err)
			}
			log.Info("database ready", "url", cfg.Database.Redacted())
			return nil
		},
		OnStop: func(context.Context) error { return db.Close() },
	})
	return db, nil
}

// NewStore wraps the database in the pipeline's state store.
func NewStore(db *sql.DB) *store.Store { return store.New(db) }
