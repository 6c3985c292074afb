package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/term"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// Progress is drawn only on an interactive terminal: a line per blob that
// takes longer than progressDelay, redrawn in place at most every
// progressInterval. Scripts, CI logs and sync Jobs see none of it.
const (
	progressDelay    = 500 * time.Millisecond
	progressInterval = 200 * time.Millisecond
)

// Seams for tests, which cannot give the process a real terminal and must
// not depend on how fast a transfer runs.
var (
	isTerminal = func(w io.Writer) bool {
		f, ok := w.(*os.File)
		return ok && term.IsTerminal(int(f.Fd()))
	}
	terminalWidth = func(w io.Writer) int {
		if f, ok := w.(*os.File); ok {
			if width, _, err := term.GetSize(int(f.Fd())); err == nil {
				return width
			}
		}
		return 0
	}
	progressNow = time.Now
)

// progressPrinter draws the progress of one blob transfer at a time on one
// terminal line, rewritten with a carriage return. A pull downloads a few
// layers at once: the line stays with the transfer drawn on it until that
// one ends, so that it does not flicker between them, and the others are
// counted meanwhile. One that ends while another holds the line still gets
// a line of its own, printed above the open one.
type progressPrinter struct {
	w     io.Writer
	now   func() time.Time
	width int // terminal columns; 0 when unknown

	mu      sync.Mutex
	current *transfer // the transfer drawn on the open line, if any
	line    string    // what the open line shows
	drawn   int       // its runes, to blank out leftovers
	lastAt  time.Time // when the open line was last drawn
}

// newProgress returns a printer for stderr when it is an interactive
// terminal, and nil (no progress at all) otherwise.
func newProgress(stderr io.Writer) *progressPrinter {
	if !isTerminal(stderr) {
		return nil
	}
	return &progressPrinter{w: stderr, now: progressNow, width: terminalWidth(stderr)}
}

// transfer is one blob going up or down.
type transfer struct {
	p       *progressPrinter
	verb    string // "Uploading" or "Downloading"
	label   string // the file's name, or the blob's short digest
	total   int64  // bytes expected; negative when unknown
	started time.Time

	// Guarded by p.mu: an upload body is read by the HTTP transport's own
	// goroutine.
	done     int64
	shown    bool
	finished bool
}

func (p *progressPrinter) start(verb, label string, total int64) *transfer {
	return &transfer{p: p, verb: verb, label: label, total: total, started: p.now()}
}

// add counts n more bytes and redraws when the transfer has run long
// enough to be shown and the line was not drawn too recently.
func (t *transfer) add(n int) {
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.finished {
		return
	}
	t.done += int64(n)
	now := p.now()
	if !t.shown && now.Sub(t.started) < progressDelay {
		return
	}
	if p.current != nil && p.current != t {
		return // another transfer holds the line
	}
	if t.shown && now.Sub(p.lastAt) < progressInterval {
		return
	}
	p.draw(t, now)
}

// finish draws the final count and ends the line, if the transfer was
// shown at all: quick transfers leave no trace.
func (t *transfer) finish() {
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	now := p.now()
	switch {
	case p.current == t:
		p.draw(t, now)
		p.endLine()
	case t.shown || now.Sub(t.started) < progressDelay:
		// Shown and then its line was closed; or quick: no trace.
	case p.current == nil:
		p.draw(t, now)
		p.endLine()
	default:
		// Its final count replaces the open line, which moves down.
		text := p.text(t)
		pad := ""
		if n := utf8.RuneCountInString(text); p.drawn > n {
			pad = strings.Repeat(" ", p.drawn-n)
		}
		_, _ = io.WriteString(p.w, "\r"+text+pad+"\n")
		held := p.current
		p.current, p.line, p.drawn = nil, "", 0
		p.draw(held, now)
	}
}

// close ends an open line, so that whatever is printed next starts on a
// line of its own.
func (p *progressPrinter) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLine()
}

func (p *progressPrinter) draw(t *transfer, now time.Time) {
	if p.current != t {
		p.endLine()
	}
	text := p.text(t)
	if p.current == t && text == p.line {
		return
	}
	n := utf8.RuneCountInString(text)
	pad := ""
	if p.drawn > n {
		pad = strings.Repeat(" ", p.drawn-n)
	}
	// A write error to the terminal is no reason to fail the transfer.
	_, _ = io.WriteString(p.w, "\r"+text+pad)
	p.current, p.line, p.drawn, p.lastAt = t, text, n, now
	t.shown = true
}

// text is what a line shows of t, fitted to the terminal.
func (p *progressPrinter) text(t *transfer) string {
	text := t.verb + " " + t.label + " " + formatBytes(t.done)
	if t.total >= 0 {
		text += "/" + formatBytes(t.total)
	}
	return fitWidth(text, p.width)
}

func (p *progressPrinter) endLine() {
	if p.current != nil {
		_, _ = io.WriteString(p.w, "\n")
	}
	p.current, p.line, p.drawn = nil, "", 0
}

// fitWidth shortens text to fit a terminal of width columns, keeping the
// end (the counts); a line that wrapped could not be redrawn in place.
func fitWidth(text string, width int) string {
	if width <= 1 {
		return text
	}
	r := []rune(text)
	if len(r) < width {
		return text
	}
	return "…" + string(r[len(r)-(width-2):])
}

// formatBytes prints n in binary units, e.g. 512 B, 12.3 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// progressClient returns the registry client of rf that reports blob
// transfers to p, and the names that label them. With p nil it is rf's
// usual client.
func progressClient(rf *registryFlags, p *progressPrinter) (*oci.Client, *blobNames, error) {
	if p == nil {
		c, err := rf.client()
		return c, nil, err
	}
	opts, err := rf.options()
	if err != nil {
		return nil, nil, err
	}
	// The HTTP client oci.NewClient would build, with the counting added.
	topts := opts.Transport
	if topts.UserAgent == "" {
		topts.UserAgent = opts.UserAgent
	}
	hc, err := transport.NewClient(topts)
	if err != nil {
		return nil, nil, err
	}
	names := &blobNames{byDigest: map[digest.Digest]pushName{}}
	// Below the retries, so that a retried upload counts from zero
	// instead of past its size.
	if r, ok := hc.Transport.(*transport.Retry); ok {
		r.Base = &progressTransport{next: r.Base, p: p, names: names}
	} else {
		hc.Transport = &progressTransport{next: hc.Transport, p: p, names: names}
	}
	opts.HTTPClient = hc
	c, err := oci.NewClient(opts)
	return c, names, err
}

// blobNames labels blobs with the names of the files they hold. A pull
// learns them from the manifest as it passes by; a push from the order of
// the files, since each blob is checked (HEAD) before it is uploaded, one
// file after the other and the config last. A size that does not match
// the file's shows the guess wrong, and the blob keeps its digest.
type blobNames struct {
	mu       sync.Mutex
	byDigest map[digest.Digest]pushName
	pending  []pushName // files of a push whose blob has not been seen yet
}

type pushName struct {
	title string
	size  int64 // of a file to push; negative for a folder, packed later
}

// expectPush gives the files of a push, in the order they are pushed.
func (b *blobNames) expectPush(files []oci.File) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range files {
		n := pushName{title: filepath.Base(filepath.Clean(f.Path)), size: -1}
		if st, err := os.Stat(f.Path); err == nil && st.Mode().IsRegular() {
			n.size = st.Size()
		}
		b.pending = append(b.pending, n)
	}
	// The config blob follows the layers.
	b.pending = append(b.pending, pushName{title: "config", size: -1})
}

// sawPush notes that the next pushed file has blob d. Files with the same
// content share a blob, which keeps the first one's name.
func (b *blobNames) sawPush(d digest.Digest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return
	}
	if _, ok := b.byDigest[d]; !ok {
		b.byDigest[d] = b.pending[0]
	}
	b.pending = b.pending[1:]
}

// sawManifest learns the titles of a manifest's layers; a blob that is
// several layers keeps the first one's.
func (b *blobNames) sawManifest(data []byte) {
	var m ocispec.Manifest
	if json.Unmarshal(data, &m) != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range m.Layers {
		title := l.Annotations[ocispec.AnnotationTitle]
		if _, seen := b.byDigest[l.Digest]; !seen && title != "" {
			b.byDigest[l.Digest] = pushName{title: title, size: l.Size}
		}
	}
}

// label names blob d of size bytes: its file's name, unless the size says
// the guess from the push order is wrong; else its short digest, as
// docker shows layers.
func (b *blobNames) label(d digest.Digest, size int64) string {
	b.mu.Lock()
	n, ok := b.byDigest[d]
	b.mu.Unlock()
	if ok && (n.size < 0 || size < 0 || n.size == size) {
		return n.title
	}
	if enc := d.Encoded(); len(enc) > 12 {
		return enc[:12]
	}
	return d.String()
}

// manifestLimit bounds the copy of a manifest kept to read its titles:
// the client refuses larger ones anyway.
const manifestLimit = oci.DefaultMaxManifestBytes

// progressTransport counts the bytes of blob uploads and downloads as they
// pass through the HTTP client.
type progressTransport struct {
	next  http.RoundTripper
	p     *progressPrinter
	names *blobNames
}

func (pt *progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if d, ok := uploadDigest(req); ok && req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0 {
		t := pt.p.start("Uploading", pt.names.label(d, req.ContentLength), req.ContentLength)
		// The request is the caller's: count through a copy.
		counted := req.Clone(req.Context())
		counted.Body = &countingBody{ReadCloser: req.Body, t: t}
		resp, err := pt.next.RoundTrip(counted)
		t.finish()
		return resp, err
	}
	d, isBlob := blobDigest(req)
	resp, err := pt.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	// A push checks each blob once; an answer that asks for credentials
	// or comes from a failing registry is followed by the same check.
	if isBlob && req.Method == http.MethodHead && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound) {
		pt.names.sawPush(d)
	}
	if resp.StatusCode != http.StatusOK || req.Method != http.MethodGet {
		return resp, nil
	}
	switch {
	case isBlob:
		t := pt.p.start("Downloading", pt.names.label(d, resp.ContentLength), resp.ContentLength)
		resp.Body = &countingBody{ReadCloser: resp.Body, t: t}
	case isManifestRequest(originalRequest(req)) && isImageManifest(resp.Header.Get("Content-Type")):
		resp.Body = &teeManifest{ReadCloser: resp.Body, names: pt.names}
	}
	return resp, nil
}

// originalRequest follows a redirected request back to the one the client
// made: a blob download may be redirected to a storage host.
func originalRequest(req *http.Request) *http.Request {
	for req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req
}

// blobDigest returns the digest of a /v2/<name>/blobs/<digest> request.
func blobDigest(req *http.Request) (digest.Digest, bool) {
	dir, last := path.Split(originalRequest(req).URL.Path)
	if !strings.HasSuffix(dir, "/blobs/") {
		return "", false
	}
	d, err := digest.Parse(last)
	return d, err == nil
}

// uploadDigest returns the digest of the PUT that completes a blob upload:
// the registry client names it in the query.
func uploadDigest(req *http.Request) (digest.Digest, bool) {
	if req.Method != http.MethodPut || !strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return "", false
	}
	d, err := digest.Parse(req.URL.Query().Get("digest"))
	return d, err == nil
}

func isManifestRequest(req *http.Request) bool {
	return strings.Contains(req.URL.Path, "/manifests/")
}

func isImageManifest(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	return mt == ocispec.MediaTypeImageManifest || mt == oci.MediaTypeDockerManifest
}

// countingBody reports the bytes read through it to a transfer, which it
// finishes at the end of the body or when it is closed.
type countingBody struct {
	io.ReadCloser
	t *transfer
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.t.add(n)
	if err == io.EOF {
		c.t.finish()
	}
	return n, err
}

func (c *countingBody) Close() error {
	c.t.finish()
	return c.ReadCloser.Close()
}

// teeManifest keeps a copy of a manifest as the client reads it, and
// hands it to names once read to the end.
type teeManifest struct {
	io.ReadCloser
	names *blobNames
	buf   bytes.Buffer
	over  bool
}

func (m *teeManifest) Read(b []byte) (int, error) {
	n, err := m.ReadCloser.Read(b)
	if !m.over {
		if m.buf.Len()+n > manifestLimit {
			m.over, m.buf = true, bytes.Buffer{}
		} else {
			m.buf.Write(b[:n])
		}
	}
	if err == io.EOF {
		m.done()
	}
	return n, err
}

// Close reads the titles too when the client stopped reading at the
// manifest's size, before seeing io.EOF.
func (m *teeManifest) Close() error {
	m.done()
	return m.ReadCloser.Close()
}

func (m *teeManifest) done() {
	if !m.over {
		m.names.sawManifest(m.buf.Bytes())
		m.over, m.buf = true, bytes.Buffer{}
	}
}
