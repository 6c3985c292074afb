package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// registryFlags are the connection flags pull and push share.
type registryFlags struct {
	plainHTTP    bool
	dockerConfig string
	caFile       string
	certFile     string
	keyFile      string
}

func (f *registryFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk to the registry over plain HTTP instead of HTTPS")
	fs.StringVar(&f.dockerConfig, "docker-config", "", "Docker config JSON with registry credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of certificate authorities to trust besides the system ones")
	fs.StringVar(&f.certFile, "cert-file", "", "PEM client certificate for registries that require one (with --key-file)")
	fs.StringVar(&f.keyFile, "key-file", "", "PEM private key of --cert-file")
}

// client builds the registry client the flags describe.
func (f *registryFlags) client() (*oci.Client, error) {
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, errors.New("--cert-file and --key-file go together; give both or neither")
	}
	opts := oci.Options{
		PlainHTTP: f.plainHTTP,
		UserAgent: "ocisync/" + Version,
		Transport: transport.Options{CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile},
	}
	path := f.dockerConfig
	if path == "" {
		path = defaultDockerConfig()
	}
	if path != "" {
		store, err := auth.LoadDockerConfigFile(path)
		if err != nil {
			return nil, err
		}
		opts.Credentials = store.CredentialFunc()
	}
	return oci.NewClient(opts)
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
		fmt.Fprintf(stderr, "ocisync %s: %v (run 'ocisync %s -h' for usage)\n", fs.Name(), err, fs.Name())
		return 2, false
	}
	return 0, true
}

// fail prints err as one line on stderr and returns exit code 1.
func fail(stderr io.Writer, cmd string, err error) int {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintf(stderr, "ocisync %s: %s\n", cmd, msg)
	return 1
}
