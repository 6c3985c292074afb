package ociimage

import (
	"bytes"
	_ "embed" // the passwd and group files
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The users and groups of every image: root and nonroot (65532), as
// distroless/static:nonroot has them. The Dockerfile copies the same two
// files, so that both ways of building give the same image.
var (
	//go:embed rootfs/etc/passwd
	Passwd []byte
	//go:embed rootfs/etc/group
	Group []byte
)

// NonRoot is the uid and gid of the nonroot user of Passwd.
const NonRoot = 65532

// NonRootUser is the config User that runs as nonroot: numeric, so that
// the kubelet can enforce runAsNonRoot.
const NonRootUser = "65532:65532"

// CABundlePath is where images have the CA certificates, and where Go's
// crypto/x509 looks first on Linux.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// Env is the environment of the manager image, as distroless sets it.
var Env = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + CABundlePath,
}

// BaseFiles are the files of a minimal base for a static binary, what
// distroless/static:nonroot provides and the manager needs: passwd and
// group with root and nonroot, the CA bundle, /tmp writable by all (1777),
// and the home folders of root and nonroot.
func BaseFiles(caBundle []byte) []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: Passwd},
		{Path: "/etc/group", Mode: 0o644, Data: Group},
		{Path: CABundlePath, Mode: 0o644, Data: caBundle},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: NonRoot, GID: NonRoot},
	}
}

// ManagerBinaryPath is where the manager image has the ocisync binary.
const ManagerBinaryPath = "/ocisync"

// Manager is the manager image for one platform: the base files, the
// static ocisync binary at /ocisync as its entrypoint, run as nonroot.
func Manager(goos, goarch string, binary, caBundle []byte) Image {
	return Image{
		OS:         goos,
		Arch:       goarch,
		Files:      append(BaseFiles(caBundle), File{Path: ManagerBinaryPath, Mode: 0o755, Data: binary}),
		Entrypoint: []string{ManagerBinaryPath},
		Env:        Env,
		User:       NonRootUser,
		WorkingDir: "/",
	}
}

// CABundle concatenates the certificates of an extracted Debian
// ca-certificates package (root is the folder dpkg-deb -x wrote) in
// sorted file-name order, as update-ca-certificates writes
// /etc/ssl/certs/ca-certificates.crt.
func CABundle(root string) ([]byte, error) {
	dir := filepath.Join(root, "usr", "share", "ca-certificates", "mozilla")
	paths, err := filepath.Glob(filepath.Join(dir, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no certificates (*.crt) in %s; is %s an extracted ca-certificates package? remove it and run make image again", dir, root)
	}
	sort.Strings(paths)
	var out bytes.Buffer
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading a CA certificate: %w", err)
		}
		if !bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("%s is not a PEM certificate; remove %s and run make image again", p, root)
		}
		out.Write(data)
		// Like update-ca-certificates: each certificate on its own lines.
		if !bytes.HasSuffix(data, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), nil
}

// TagOf returns the tag of an image reference such as
// registry.example.com:5000/ocisync:v1 (v1); latest when it has none.
func TagOf(ref string) (string, error) {
	if ref == "" {
		return "", errors.New("empty image reference; give one such as ocisync:latest")
	}
	name, _, _ := strings.Cut(ref, "@") // a digest is not a tag
	last := name[strings.LastIndex(name, "/")+1:]
	_, tag, found := strings.Cut(last, ":")
	if !found {
		return "latest", nil
	}
	if !validTag(tag) {
		return "", fmt.Errorf("image reference %q has tag %q: a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", ref, tag)
	}
	return tag, nil
}

// validTag reports whether tag matches the distribution spec's
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, c := range tag {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
