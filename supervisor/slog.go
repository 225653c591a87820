package supervisor

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// SlogToZap returns a *slog.Logger whose records go to l (levels map
// Debug/Info/Warn/Error to zap's; attributes become zap fields). A nil l
// gives a logger that discards everything. protoactor logs through slog;
// use this (or LoggerFactory) so a process has one logger.
func SlogToZap(l *zap.Logger) *slog.Logger {
	if l == nil {
		l = zap.NewNop()
	}
	return slog.New(zapslog.NewHandler(l.Core()))
}

// LoggerFactory returns a protoactor logger factory that routes the actor
// system's logging into l, tagged with the system id:
//
//	system := actor.NewActorSystem(actor.WithLoggerFactory(supervisor.LoggerFactory(log)))
func LoggerFactory(l *zap.Logger) func(*actor.ActorSystem) *slog.Logger {
	if l == nil {
		l = zap.NewNop()
	}
	return func(system *actor.ActorSystem) *slog.Logger {
		return SlogToZap(l.With(zap.String("lib", "protoactor"), zap.String("system", system.ID)))
	}
}
