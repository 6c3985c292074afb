package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// Server serves a Handler on an address while the manager runs, on every
// replica: a replica that does not lead hands the pushes on through the
// API server (see the manager's trigger), so a Service may route to any
// of them and readiness need not follow the Lease.
type Server struct {
	Addr    string
	Handler http.Handler
	// CertDir, when set, holds tls.crt and tls.key (the layout of a
	// kubernetes.io/tls Secret); the Server then speaks HTTPS and picks
	// up renewed files without a restart.
	CertDir string
}

// NeedLeaderElection is false: every replica receives.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens and serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	var tlsConfig *tls.Config
	if s.CertDir != "" {
		w, err := certwatcher.New(filepath.Join(s.CertDir, "tls.crt"), filepath.Join(s.CertDir, "tls.key"))
		if err != nil {
			return fmt.Errorf("the push receiver cannot load its certificate from %s: %w; put tls.crt and tls.key in --webhook-cert-dir", s.CertDir, err)
		}
		go func() { _ = w.Start(ctx) }()
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}
	}
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("the push receiver cannot listen on %s: %w; choose another --webhook-bind-address", s.Addr, err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
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
