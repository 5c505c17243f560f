package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idprotect/enroll/internal/clock"
)

// gcraScript is GCRA in one atomic Redis step. Times are microseconds from the caller's
// clock, so all replicas and the in-process limiter agree on the arithmetic; the key expires
// once its budget has refilled.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local spend = ARGV[4] == "1"
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, allow_at - now}
end
if spend then
  redis.call("SET", KEYS[1], new_tat, "PX", math.ceil((new_tat - now) / 1000) + 1)
end
return {1, 0}
`)

// Redis is a limiter whose state is shared by every replica through Redis.
type Redis struct {
	client *redis.Client
	clock  clock.Clock
	prefix string
}

// NewRedis connects to url (redis://host:port/db) and checks the server answers.
func NewRedis(ctx context.Context, url, prefix string, clk clock.Clock) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("invalid Redis URL: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = time.Second, 250*time.Millisecond, 250*time.Millisecond
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("failed to reach Redis: %w", err)
	}
	return &Redis{client: c, clock: clk, prefix: prefix}, nil
}

// Close closes the client.
func (r *Redis) Close() error { return r.client.Close() }

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	return r.run(ctx, key, l, "1")
}

// Peek implements Limiter.
func (r *Redis) Peek(ctx context.Context, key string, l Limit) (Decision, error) {
	return r.run(ctx, key, l, "0")
}

func (r *Redis) run(ctx context.Context, key string, l Limit, spend string) (Decision, error) {
	now := r.clock.Now().UnixMicro()
	res, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key}, now, l.interval().Microseconds(), l.Burst, spend).Int64Slice()
	if err != nil || len(res) != 2 {
		return Decision{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if res[0] == 1 {
		return Decision{Allowed: true}, nil
	}
	return Decision{Allowed: false, RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}
