package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Server serves a Handler on an address while the manager runs, on the
// leader only: the syncs it triggers go into the leader's queue, and a
// replica that does not lead must not accept events it cannot act on
// (the registry retries on another connection instead).
type Server struct {
	Addr    string
	Handler http.Handler
}

// NeedLeaderElection makes the manager start the Server once this
// replica leads.
func (s *Server) NeedLeaderElection() bool { return true }

// Start listens and serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("the push receiver cannot listen on %s: %w; choose another --webhook-bind-address", s.Addr, err)
	}
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err = srv.Serve(l)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ReadToken reads the shared token from file, trimming the whitespace
// around it (a trailing newline, as most tools write one). An empty
// token is refused: it would authorize anyone.
func ReadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the webhook token: %w; point --webhook-token-file at a readable file holding the token", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("the webhook token file %s is empty; put a long random token in it", file)
	}
	return token, nil
}
