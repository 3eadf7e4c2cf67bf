package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// control lets a test stop one service of a running stack and start it
// again on the same addresses, as an operator restarting a process would:
// the resilience tests kill the auth service or an upstream, and the
// revocation tests start a gateway after a revocation. Every other service
// keeps running and keeps the addresses it was configured with.
type control struct {
	mu        sync.Mutex
	listeners map[string]net.Listener // keyed like Options.Addrs
	services  map[string]*managed
}

// managed is one service goroutine and how to start it again.
type managed struct {
	fn       func(context.Context) error
	onErr    func(error)
	parent   context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	stopping bool
}

// listener returns the current listener for key ("<service>" or
// "<service>-ops"); a restarted service gets a fresh one on the same
// address.
func (c *control) listener(key string) net.Listener {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listeners[key]
}

// launch runs fn as service name under parent. onErr is called when fn
// fails on its own; a service stopped through StopService never calls it.
func (s *Stack) launch(parent context.Context, name string, fn func(context.Context) error, onErr func(error)) {
	m := &managed{fn: fn, onErr: onErr, parent: parent}
	s.ctl.mu.Lock()
	if s.ctl.services == nil {
		s.ctl.services = map[string]*managed{}
	}
	s.ctl.services[name] = m
	s.ctl.mu.Unlock()
	s.goManaged(m)
}

func (s *Stack) goManaged(m *managed) {
	ctx, cancel := context.WithCancel(m.parent)
	done := make(chan struct{})
	s.ctl.mu.Lock()
	m.cancel, m.done, m.stopping = cancel, done, false
	s.ctl.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer cancel()
		err := m.fn(ctx)
		s.ctl.mu.Lock()
		stopping := m.stopping
		s.ctl.mu.Unlock()
		if err != nil && !stopping {
			m.onErr(err)
		}
	}()
}

// StopService stops one service gracefully and waits until it has
// returned; its listeners are closed. The rest of the stack keeps running.
func (s *Stack) StopService(name string) error {
	s.ctl.mu.Lock()
	m, ok := s.ctl.services[name]
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	if ok {
		m.stopping = true
		cancel, done = m.cancel, m.done
	}
	s.ctl.mu.Unlock()
	if !ok {
		return fmt.Errorf("stack: no service %q", name)
	}
	cancel()
	<-done
	return nil
}

// StartService starts a service stopped by StopService again, on its old
// addresses, and waits until its ops /readyz (and for the gateway the
// public /readyz) answers 200. In process mode that is a new child
// process, handed fresh listeners on the same addresses.
func (s *Stack) StartService(ctx context.Context, name string) error {
	s.ctl.mu.Lock()
	m, ok := s.ctl.services[name]
	var done chan struct{}
	if ok {
		done = m.done
	}
	s.ctl.mu.Unlock()
	if !ok {
		return fmt.Errorf("stack: no service %q", name)
	}
	select {
	case <-done:
	default:
		return fmt.Errorf("stack: %s is running", name)
	}
	if m.parent.Err() != nil {
		return fmt.Errorf("stack: stopped: %w", m.parent.Err())
	}
	for _, key := range []string{name, name + "-ops"} {
		l, err := relisten(ctx, s.ctl.listener(key).Addr().String())
		if err != nil {
			return fmt.Errorf("listen for %s: %w", key, err)
		}
		s.ctl.mu.Lock()
		s.ctl.listeners[key] = l
		s.ctl.mu.Unlock()
	}
	s.goManaged(m)
	if err := s.waitServiceReady(ctx, name, 60*time.Second); err != nil {
		return err
	}
	// In process mode the service has a new process id; pids.json is
	// what tools read to find it.
	if len(s.PIDs()) > 0 {
		return s.writePIDs()
	}
	return nil
}

// RestartService is StopService followed by StartService.
func (s *Stack) RestartService(ctx context.Context, name string) error {
	if err := s.StopService(name); err != nil {
		return err
	}
	return s.StartService(ctx, name)
}

// relisten binds addr again, retrying briefly while the old socket is
// still being released.
func relisten(ctx context.Context, addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Stack) waitServiceReady(ctx context.Context, name string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client, err := s.HTTPClient("")
	if err != nil {
		return err
	}
	urls := []string{s.Endpoints.Services[name].Ops + "/readyz"}
	if name == Gateway {
		urls = append(urls, s.Endpoints.Gateway+"/readyz")
	}
	for _, u := range urls {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				if serr := s.Err(); serr != nil {
					return errors.Join(fmt.Errorf("waiting for %s: %w", u, ctx.Err()), serr)
				}
				return fmt.Errorf("waiting for %s: %w", u, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
