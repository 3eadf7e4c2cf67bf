package dbx

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// tracing is a gorm plugin that wraps each statement in a client span named
// "db <operation> <table>". It records the operation and table, never SQL
// text or values: those may carry personal data. (gorm.io/plugin/opentelemetry
// pulls in older dependency versions; this is the part we need.)
type tracing struct {
	tracer trace.Tracer
	system string
}

const spanKey = "rampart:span"

func (t *tracing) Name() string { return "rampart:tracing" }

func (t *tracing) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	type hook struct {
		op       string
		register func(name string, fn func(*gorm.DB)) error
		after    func(name string, fn func(*gorm.DB)) error
	}
	hooks := []hook{
		{"insert", func(n string, f func(*gorm.DB)) error { return cb.Create().Before("gorm:create").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Create().After("gorm:create").Register(n, f) }},
		{"select", func(n string, f func(*gorm.DB)) error { return cb.Query().Before("gorm:query").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Query().After("gorm:query").Register(n, f) }},
		{"update", func(n string, f func(*gorm.DB)) error { return cb.Update().Before("gorm:update").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Update().After("gorm:update").Register(n, f) }},
		{"delete", func(n string, f func(*gorm.DB)) error { return cb.Delete().Before("gorm:delete").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Delete().After("gorm:delete").Register(n, f) }},
		{"row", func(n string, f func(*gorm.DB)) error { return cb.Row().Before("gorm:row").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Row().After("gorm:row").Register(n, f) }},
		{"raw", func(n string, f func(*gorm.DB)) error { return cb.Raw().Before("gorm:raw").Register(n, f) },
			func(n string, f func(*gorm.DB)) error { return cb.Raw().After("gorm:raw").Register(n, f) }},
	}
	for _, h := range hooks {
		if err := h.register("rampart:before_"+h.op, t.before(h.op)); err != nil {
			return err
		}
		if err := h.after("rampart:after_"+h.op, t.after); err != nil {
			return err
		}
	}
	return nil
}

func (t *tracing) before(op string) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Statement == nil || db.Statement.Context == nil {
			return
		}
		table := db.Statement.Table
		name := "db " + op
		if table != "" {
			name += " " + table
		}
		ctx, span := t.tracer.Start(db.Statement.Context, name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("db.system.name", t.system),
				attribute.String("db.operation.name", op),
				attribute.String("db.collection.name", table),
			))
		db.Statement.Context = ctx
		db.InstanceSet(spanKey, span)
	}
}

func (t *tracing) after(db *gorm.DB) {
	v, ok := db.InstanceGet(spanKey)
	if !ok {
		return
	}
	span, ok := v.(trace.Span)
	if !ok {
		return
	}
	if db.Error != nil && db.Error != gorm.ErrRecordNotFound { //nolint:errorlint // gorm sets the sentinel itself
		span.RecordError(db.Error)
		span.SetStatus(codes.Error, "query failed")
	}
	span.SetAttributes(attribute.Int64("db.response.returned_rows", db.RowsAffected))
	span.End()
}
