package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/tempestrt/tempest/gateway"
)

// GatewayOptions configure the node's HTTP gateway.
type GatewayOptions struct {
	gateway.Options
	// EnableChaos turns on POST /v1/admin/kill (and Node.Kill).
	EnableChaos bool
}

// DefaultGatewayOptions: gateway.DefaultOptions, chaos API off.
func DefaultGatewayOptions() GatewayOptions {
	return GatewayOptions{Options: gateway.DefaultOptions()}
}

// readHeaderTimeout bounds how long a client may take to send its request
// headers (slowloris); shutdownGrace is how long a stopping gateway lets
// requests in flight finish before it closes their connections.
const (
	readHeaderTimeout = 5 * time.Second
	shutdownGrace     = 2 * time.Second
)

// gatewayRuntime owns the gateway's listener and server across restarts of
// the gateway actor: a restart closes the server and serves again on the
// same address.
type gatewayRuntime struct {
	n    *Node
	addr string
	opts gateway.Options
	log  *zap.Logger

	mu     sync.Mutex
	ln     net.Listener // the first listener, handed from Start to the first serve
	fe     *gateway.FrontEnd
	served chan struct{}
	past   gateway.FrontEndStats // of the front ends before a restart
}

// stats is the front ends' counts since the node started.
func (g *gatewayRuntime) stats() gateway.FrontEndStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fe == nil {
		return g.past
	}
	return g.past.Plus(g.fe.Stats())
}

func newGatewayRuntime(n *Node, addr string, o GatewayOptions) (*gatewayRuntime, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("actors: gateway listen %s: %w", addr, err)
	}
	return &gatewayRuntime{
		n: n, addr: ln.Addr().String(), ln: ln, log: n.log.Named("gateway"),
		opts: o.Options,
	}, nil
}

func (g *gatewayRuntime) serve() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fe != nil {
		return nil
	}
	ln := g.ln
	g.ln = nil
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", g.addr); err != nil {
			return fmt.Errorf("gateway listen %s: %w", g.addr, err)
		}
	}
	// Service calls are served by the front end's own loop; the rest of
	// HTTP by this server (gateway.FrontEnd).
	srv := &http.Server{ReadHeaderTimeout: readHeaderTimeout, ErrorLog: zap.NewStdLog(g.log),
		ConnContext: gateway.ConnContext}
	fe := gateway.NewFrontEnd(nodeBackend{g.n}, g.opts, srv)
	done := make(chan struct{})
	g.fe, g.served = fe, done
	go func() {
		defer close(done)
		if err := fe.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("gateway serve", zap.Error(err))
		}
	}()
	g.log.Info("gateway listening", zap.String("addr", g.addr))
	return nil
}

// shutdown stops the server (waiting briefly for in-flight requests) and
// closes a listener that was never served.
func (g *gatewayRuntime) shutdown() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	if g.ln != nil {
		err = g.ln.Close()
		g.ln = nil
	}
	if g.fe != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if e := g.fe.Shutdown(ctx); e != nil {
			_ = g.fe.Close()
		}
		cancel()
		<-g.served
		g.past = g.past.Plus(g.fe.Stats())
		g.fe = nil
	}
	return err
}

// gatewayActor is the gateway in the supervision tree.
type gatewayActor struct{ g *gatewayRuntime }

func (a *gatewayActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if err := a.g.serve(); err != nil {
			panic(err) // supervisor retries with backoff
		}
	case *actor.Stopping, *actor.Restarting:
		_ = a.g.shutdown()
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// nodeBackend adapts Node to gateway.Backend.
type nodeBackend struct{ n *Node }

func (b nodeBackend) Call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error) {
	return b.n.Call(ctx, service, method, body, timeout)
}
func (b nodeBackend) Admit(ctx context.Context, req gateway.AdmitRequest) gateway.Admission {
	return b.n.Admit(ctx, req)
}
func (b nodeBackend) ObserveRefusal(took time.Duration) { b.n.refusalTime.observe(took) }
func (b nodeBackend) Status() any                       { return b.n.Status() }
func (b nodeBackend) Actors() []string                  { return b.n.Actors() }
func (b nodeBackend) Kill(path string) error {
	if err := b.n.Kill(path); err != nil {
		return AsError(err)
	}
	return nil
}
