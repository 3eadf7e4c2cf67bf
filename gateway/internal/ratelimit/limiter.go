package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// gcraScript is GCRA in one atomic step on the Redis server, with the
// server's clock (TIME), so replicas with skewed clocks still share one
// budget. Times are integer microseconds. It returns {allowed, retry_us,
// reset_us}; the key expires when the budget is whole again, so Redis
// holds only clients that are in debt.
const gcraScript = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local newtat = tat + interval
local allow_at = newtat - burst * interval
if now < allow_at then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], newtat, 'PX', math.ceil((newtat - now) / 1000) + 1)
return {1, 0, newtat - now}
`

// Redis is the shared store.
type Redis struct {
	client *redis.Client
	script *redis.Script
	prefix string
}

// NewRedis uses client; keys are "<prefix><limit>:<key>".
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, script: redis.NewScript(gcraScript), prefix: prefix}
}

// Allow takes one request of key against l in Redis.
func (r *Redis) Allow(ctx context.Context, l *Limit, key string) (Decision, error) {
	us := max(1, l.Interval.Microseconds())
	res, err := r.script.Run(ctx, r.client, []string{r.prefix + l.Name + ":" + key}, us, l.Burst).Int64Slice()
	if err != nil {
		return Decision{}, err
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("ratelimit: script returned %d values", len(res))
	}
	d := Decision{Allowed: res[0] == 1, Limit: l.Burst,
		RetryAfter: time.Duration(res[1]) * time.Microsecond, Reset: time.Duration(res[2]) * time.Microsecond}
	if d.Allowed {
		// remaining = (burst*interval - reset) / interval, as in gcra.
		d.Remaining = int((int64(l.Burst)*us - res[2]) / us)
	}
	return d, nil
}

// Options configure a Limiter.
type Options struct {
	// Limits are every limit the limiter will be asked about; their
	// metric series are created up front.
	Limits []*Limit
	// MaxKeys bounds the local store (see NewLocal).
	MaxKeys int
	// Redis, when set, is the shared store; Local is then the fallback.
	Redis *Redis
	// RetryRedisAfter is how long the limiter stays on local state after a
	// Redis failure before it tries Redis again (default 1s), so an outage
	// costs one timeout per second rather than one per request.
	RetryRedisAfter time.Duration
	Registerer      prometheus.Registerer
	Logger          *slog.Logger
	Now             func() time.Time
}

// Limiter decides requests against limits, in Redis when configured and
// reachable, locally otherwise.
type Limiter struct {
	o      Options
	local  *Local
	redis  *Redis
	log    *slog.Logger
	downTo atomic.Int64 // unix ns until which Redis is not tried

	decisions *prometheus.CounterVec
	counters  map[*Limit]*[2][2]prometheus.Counter // [backend][allowed]
	redisUp   prometheus.Gauge
	fallback  prometheus.Counter
}

// Backends, for the metric label.
const (
	backendLocal = 0
	backendRedis = 1
)

// New returns a Limiter and registers its metrics.
func New(o Options) (*Limiter, error) {
	if o.Registerer == nil {
		return nil, errors.New("ratelimit: a registerer is required")
	}
	if o.RetryRedisAfter <= 0 {
		o.RetryRedisAfter = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{o: o, local: NewLocal(o.MaxKeys), redis: o.Redis, log: o.Logger, counters: map[*Limit]*[2][2]prometheus.Counter{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_gateway_ratelimit_decisions_total",
		Help: "Rate-limit decisions, by limit, backend (redis, local) and decision (allowed, limited).",
	}, []string{"limit", "backend", "decision"})
	l.redisUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rampart_gateway_ratelimit_redis_up",
		Help: "1 while the shared Redis rate-limit store answers, 0 while the gateway limits on local state only (or has no Redis configured).",
	})
	l.fallback = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rampart_gateway_ratelimit_fallback_total",
		Help: "Rate-limit decisions taken on local state because Redis was configured but unreachable.",
	})
	for _, c := range []prometheus.Collector{l.decisions, l.redisUp, l.fallback} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimit metrics: %w", err)
		}
	}
	if l.redis != nil {
		l.redisUp.Set(1)
	}
	for _, lim := range o.Limits {
		var cs [2][2]prometheus.Counter
		for b, backend := range []string{"local", "redis"} {
			for a, decision := range []string{"limited", "allowed"} {
				cs[b][a] = l.decisions.WithLabelValues(lim.Name, backend, decision)
			}
		}
		l.counters[lim] = &cs
	}
	return l, nil
}

// Allow takes one request of key against lim.
func (l *Limiter) Allow(ctx context.Context, lim *Limit, key string) Decision {
	now := l.o.Now()
	if l.redis != nil && now.UnixNano() >= l.downTo.Load() {
		d, err := l.redis.Allow(ctx, lim, key)
		if err == nil {
			if l.downTo.Load() != 0 && l.downTo.Swap(0) != 0 {
				l.redisUp.Set(1)
				l.log.InfoContext(ctx, "rate-limit store reachable again; limits are shared")
			}
			l.count(lim, backendRedis, d.Allowed)
			return d
		}
		if ctx.Err() != nil {
			// The client left; that says nothing about Redis.
			return l.decideLocal(lim, key, now)
		}
		if l.downTo.Swap(now.Add(l.o.RetryRedisAfter).UnixNano()) == 0 {
			l.log.WarnContext(ctx, "rate-limit store unreachable; limiting on local state", slog.Any("error", err))
		}
		l.redisUp.Set(0)
	}
	if l.redis != nil {
		l.fallback.Inc()
	}
	return l.decideLocal(lim, key, now)
}

func (l *Limiter) decideLocal(lim *Limit, key string, now time.Time) Decision {
	d := l.local.Allow(lim, key, now)
	l.count(lim, backendLocal, d.Allowed)
	return d
}

func (l *Limiter) count(lim *Limit, backend int, allowed bool) {
	cs, ok := l.counters[lim]
	if !ok {
		return // a limit not declared up front: decided, not counted
	}
	a := 0
	if allowed {
		a = 1
	}
	cs[backend][a].Inc()
}

// LocalLen is the number of keys in the local store.
func (l *Limiter) LocalLen() int { return l.local.Len() }
