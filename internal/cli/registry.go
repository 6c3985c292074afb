package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// registryFlags are the connection flags pull and push share.
type registryFlags struct {
	plainHTTP     bool
	dockerConfigs pathList
	caFile        string
	certFile      string
	keyFile       string
	timeout       time.Duration
}

// pathList is a flag that may be given several times.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ", ") }

func (p *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*p = append(*p, v)
	return nil
}

func (f *registryFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk to the registry over plain HTTP instead of HTTPS")
	fs.Var(&f.dockerConfigs, "docker-config", "Docker config `FILE` with registry credentials, in config.json (.dockerconfigjson) or legacy .dockercfg form; repeat it to merge several: for each registry the first file with credentials for it wins, as with a pod's imagePullSecrets (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of certificate authorities to trust besides the system ones")
	fs.StringVar(&f.certFile, "cert-file", "", "PEM client certificate for registries that require one (with --key-file)")
	fs.StringVar(&f.keyFile, "key-file", "", "PEM private key of --cert-file")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up on the whole command after `DURATION`, e.g. 30m (default: no overall limit, and each registry call may take up to "+oci.DefaultTimeout.String()+")")
}

// check reports flag values that parse but make no sense.
func (f *registryFlags) check() error {
	if f.timeout < 0 {
		return fmt.Errorf("--timeout is %s; give a positive duration such as 30m, or 0 for no limit", f.timeout)
	}
	return nil
}

// options builds the client options the flags describe.
func (f *registryFlags) options() (oci.Options, error) {
	if (f.certFile == "") != (f.keyFile == "") {
		return oci.Options{}, errors.New("--cert-file and --key-file go together; give both or neither")
	}
	opts := oci.Options{
		PlainHTTP: f.plainHTTP,
		UserAgent: "ocisync/" + Version,
		Transport: transport.Options{CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile},
		// The client's own per-call limit must not cut a long blob
		// download short of the limit the user chose for the whole run.
		Timeout: f.timeout,
	}
	paths := []string(f.dockerConfigs)
	if len(paths) == 0 {
		if p := defaultDockerConfig(); p != "" {
			paths = []string{p}
		}
	}
	if len(paths) > 0 {
		store := &auth.Store{}
		for _, p := range paths {
			s, err := auth.LoadDockerConfigFile(p)
			if err != nil {
				return oci.Options{}, err
			}
			// Merge keeps earlier entries first: the first file with
			// credentials for a registry wins.
			store.Merge(s)
		}
		opts.Credentials = store.CredentialFunc()
	}
	return opts, nil
}

// client builds the registry client the flags describe.
func (f *registryFlags) client() (*oci.Client, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	return oci.NewClient(opts)
}

// context returns the context of the command: canceled by SIGINT or
// SIGTERM (a Job being deleted), and ending after --timeout when set.
func (f *registryFlags) context() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if f.timeout <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	return ctx, func() { cancel(); stop() }
}

// explainTimeout adds to err that --timeout ran out, when it did: the
// error itself may only say that a context deadline was exceeded.
func (f *registryFlags) explainTimeout(ctx context.Context, err error) error {
	if f.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (--timeout %s ran out; give more time for large artifacts or slow registries)", err, f.timeout)
	}
	return err
}

// defaultDockerConfig returns the Docker CLI's config file if there is
// one, so that `docker login` credentials work as they do for ORAS.
func defaultDockerConfig() string {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".docker")
	}
	p := filepath.Join(dir, "config.json")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// parseFlags parses args and reports usage problems the way every
// subcommand does: -h prints the flags and exits 0, anything else wrong
// prints one line and exits 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
		return usageError(stderr, fs.Name(), err), false
	}
	return 0, true
}

// usageError prints a usage problem as one line and returns exit code 2.
func usageError(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "ocisync %s: %v (run 'ocisync %s -h' for usage)\n", cmd, err, cmd)
	return 2
}

// fail prints err as one line on stderr and returns exit code 1.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "ocisync %s: %s\n", cmd, oneLine(err))
	return 1
}

// oneLine is err's message with all whitespace runs, newlines included,
// turned into single spaces.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
