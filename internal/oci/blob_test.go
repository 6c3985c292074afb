package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readChecked reads rc to the end in small pieces. It fails the test if a
// Read reports io.EOF while err is expected, and checks that a failure is
// sticky: the next Read fails the same way.
func readChecked(t *testing.T, rc io.Reader, wantErr error) []byte {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, 3) // small, so that failures can come mid-stream
	for i := 0; ; i++ {
		n, err := rc.Read(buf)
		out.Write(buf[:n])
		if err == nil {
			if i > 1<<20 {
				t.Fatal("reader never ends")
			}
			continue
		}
		if wantErr == nil {
			if err != io.EOF {
				t.Fatalf("Read: %v, want io.EOF at the end of good content", err)
			}
			return out.Bytes()
		}
		if err == io.EOF {
			t.Fatalf("Read returned io.EOF for bad content (want %v) after %q", wantErr, out.String())
		}
		if !errors.Is(err, wantErr) {
			t.Fatalf("Read: %v, want %v", err, wantErr)
		}
		if _, again := rc.Read(buf); again == nil || again == io.EOF {
			t.Fatalf("a second Read after %v returned %v; failures must be sticky", err, again)
		}
		return out.Bytes()
	}
}

func TestFetchBlob(t *testing.T) {
	ctx := context.Background()
	content := []byte("hello, blob content that is long enough to split")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(content), Size: int64(len(content))}
	tampered := bytes.ToUpper(content)

	// serve answers blob GETs with body, declaring Content-Length length
	// (or sending chunked when length < 0).
	serve := func(body []byte, length int) func(f *fakeRegistry) {
		return func(f *fakeRegistry) {
			f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/blobs/") {
					return false
				}
				if length >= 0 {
					w.Header().Set("Content-Length", strconv.Itoa(length))
				}
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				_, _ = w.Write(body)
				return true
			})
		}
	}

	tests := []struct {
		name       string
		desc       ocispec.Descriptor
		max        int64
		setup      func(f *fakeRegistry)
		wantOpen   []error // FetchBlob itself fails with all of these
		wantRead   error   // reading fails with this
		wantNoReqs bool
	}{
		{name: "good", desc: desc},
		{name: "good chunked", desc: desc, setup: serve(content, -1)},
		{name: "good at the limit", desc: desc, max: desc.Size},
		{name: "truncated, Content-Length promised more", desc: desc, setup: serve(content[:10], len(content)), wantRead: ErrSizeMismatch},
		{name: "truncated chunked", desc: desc, setup: serve(content[:10], -1), wantRead: ErrSizeMismatch},
		{name: "empty chunked", desc: desc, setup: serve(nil, -1), wantRead: ErrSizeMismatch},
		{name: "tampered same length", desc: desc, setup: serve(tampered, len(tampered)), wantRead: ErrDigestMismatch},
		{name: "tampered chunked", desc: desc, setup: serve(tampered, -1), wantRead: ErrDigestMismatch},
		{name: "longer chunked", desc: desc, setup: serve(append(append([]byte(nil), content...), 'x'), -1), wantRead: ErrSizeMismatch},
		{name: "much longer chunked", desc: desc, setup: serve(bytes.Repeat(content, 100), -1), wantRead: ErrSizeMismatch},
		{name: "Content-Length larger than descriptor", desc: desc, setup: serve(append(append([]byte(nil), content...), 'x'), len(content)+1), wantOpen: []error{ErrSizeMismatch}},
		{name: "Content-Length smaller than descriptor", desc: desc, setup: serve(content[:5], 5), wantOpen: []error{ErrSizeMismatch}},
		{name: "over maxSize", desc: desc, max: desc.Size - 1, wantOpen: []error{ErrTooLarge}, wantNoReqs: true},
		{name: "not in registry", desc: ocispec.Descriptor{Digest: digest.FromString("other"), Size: 5}, wantOpen: []error{ErrBlobUnknown, ErrNotFound}},
		{name: "invalid digest", desc: ocispec.Descriptor{Digest: "sha256:abc", Size: 5}, wantOpen: []error{digest.ErrDigestInvalidLength}, wantNoReqs: true},
		{name: "negative size", desc: ocispec.Descriptor{Digest: desc.Digest, Size: -1}, wantOpen: []error{}, wantNoReqs: true},
		{name: "embedded data", desc: ocispec.Descriptor{Digest: desc.Digest, Size: desc.Size, Data: content}, wantNoReqs: true},
		{name: "embedded data tampered", desc: ocispec.Descriptor{Digest: desc.Digest, Size: desc.Size, Data: tampered}, wantRead: ErrDigestMismatch, wantNoReqs: true},
		{name: "embedded data too short", desc: ocispec.Descriptor{Digest: desc.Digest, Size: desc.Size, Data: content[1:]}, wantRead: ErrSizeMismatch, wantNoReqs: true},
		{name: "embedded data over maxSize", desc: ocispec.Descriptor{Digest: desc.Digest, Size: desc.Size, Data: content}, max: 1, wantOpen: []error{ErrTooLarge}, wantNoReqs: true},
		{name: "huge descriptor size, chunked body", desc: ocispec.Descriptor{Digest: desc.Digest, Size: math.MaxInt64}, setup: serve(content, -1), wantRead: ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.putBlob(testRepo, desc.MediaType, content)
			if tt.setup != nil {
				tt.setup(f)
			}
			rc, err := f.repo(t).FetchBlob(ctx, tt.desc, tt.max)
			if tt.wantNoReqs && f.requestCount() != 0 {
				t.Errorf("FetchBlob made %d requests, want none", f.requestCount())
			}
			if tt.wantOpen != nil {
				if err == nil {
					rc.Close()
					t.Fatal("FetchBlob succeeded, want an error")
				}
				for _, we := range tt.wantOpen {
					if !errors.Is(err, we) {
						t.Errorf("FetchBlob error %q does not match %v", err, we)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("FetchBlob: %v", err)
			}
			defer rc.Close()
			got := readChecked(t, rc, tt.wantRead)
			if tt.wantRead == nil && !bytes.Equal(got, content) {
				t.Errorf("read %q, want %q", got, content)
			}
			if tt.wantRead != nil && int64(len(got)) > tt.desc.Size {
				t.Errorf("reader handed on %d bytes, more than the %d the descriptor allows", len(got), tt.desc.Size)
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	content := []byte("0123456789")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	sha512 := digest.SHA512.FromBytes(content)
	tests := []struct {
		name    string
		r       io.Reader
		desc    ocispec.Descriptor
		wantErr error
		anyErr  bool
	}{
		{name: "good", r: bytes.NewReader(content), desc: desc},
		{name: "good, data with EOF", r: iotest.DataErrReader(bytes.NewReader(content)), desc: desc},
		{name: "good, one byte at a time", r: iotest.OneByteReader(bytes.NewReader(content)), desc: desc},
		{name: "good sha512", r: bytes.NewReader(content), desc: ocispec.Descriptor{Digest: sha512, Size: desc.Size}},
		{name: "empty blob", r: bytes.NewReader(nil), desc: ocispec.Descriptor{Digest: digest.FromBytes(nil), Size: 0}},
		{name: "empty blob with extra data", r: bytes.NewReader([]byte("x")), desc: ocispec.Descriptor{Digest: digest.FromBytes(nil), Size: 0}, wantErr: ErrSizeMismatch},
		{name: "short", r: bytes.NewReader(content[:9]), desc: desc, wantErr: ErrSizeMismatch},
		{name: "short, data with EOF", r: iotest.DataErrReader(bytes.NewReader(content[:9])), desc: desc, wantErr: ErrSizeMismatch},
		{name: "long", r: bytes.NewReader(append(append([]byte(nil), content...), '!')), desc: desc, wantErr: ErrSizeMismatch},
		{name: "long, data with EOF", r: iotest.DataErrReader(bytes.NewReader(append(append([]byte(nil), content...), '!'))), desc: desc, wantErr: ErrSizeMismatch},
		{name: "tampered", r: bytes.NewReader([]byte("0123456780")), desc: desc, wantErr: ErrDigestMismatch},
		{name: "tampered sha512", r: bytes.NewReader([]byte("0123456780")), desc: ocispec.Descriptor{Digest: sha512, Size: desc.Size}, wantErr: ErrDigestMismatch},
		{name: "read error", r: io.MultiReader(bytes.NewReader(content[:4]), iotest.ErrReader(errors.New("connection reset"))), desc: desc, anyErr: true},
		{name: "unexpected EOF", r: io.MultiReader(bytes.NewReader(content[:4]), iotest.ErrReader(io.ErrUnexpectedEOF)), desc: desc, wantErr: io.ErrUnexpectedEOF},
		{name: "unsupported algorithm", r: bytes.NewReader(content), desc: ocispec.Descriptor{Digest: "md5:781e5e245d69b566979b86e28d23f2c7", Size: desc.Size}, anyErr: true},
		{name: "huge size", r: bytes.NewReader(content), desc: ocispec.Descriptor{Digest: desc.Digest, Size: math.MaxInt64}, wantErr: ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier(io.NopCloser(tt.r), tt.desc)
			want := tt.wantErr
			if tt.anyErr {
				want = errAny
			}
			got := readChecked(t, anyErrReader{v}, want)
			if v.Verified() != (want == nil) {
				t.Errorf("Verified() = %v after reading", v.Verified())
			}
			if want == nil && !bytes.Equal(got, content) && tt.desc.Size != 0 {
				t.Errorf("read %q, want %q", got, content)
			}
			if int64(len(got)) > tt.desc.Size {
				t.Errorf("handed on %d bytes, more than the %d the descriptor allows", len(got), tt.desc.Size)
			}
		})
	}
}

// errAny stands for "some error other than io.EOF" in readChecked.
var errAny = errors.New("any error")

// anyErrReader makes every error other than io.EOF also match errAny.
type anyErrReader struct{ r io.Reader }

func (a anyErrReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = anyErr{err}
	}
	return n, err
}

type anyErr struct{ error }

func (e anyErr) Unwrap() error        { return e.error }
func (e anyErr) Is(target error) bool { return target == errAny }

func TestVerifierNotVerifiedBeforeEOF(t *testing.T) {
	content := []byte("abc")
	v := NewVerifier(io.NopCloser(bytes.NewReader(content)), ocispec.Descriptor{Digest: digest.FromBytes(content), Size: 3})
	buf := make([]byte, 3)
	if n, err := v.Read(buf); n != 3 || (err != nil && !errors.Is(err, io.EOF)) {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if v.Verified() {
		// bytes.Reader returns EOF only on the next call.
		t.Fatal("Verified() before the stream reported its end")
	}
	if _, err := v.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("second Read = %v, want io.EOF", err)
	}
	if !v.Verified() {
		t.Fatal("not Verified() after io.EOF")
	}
}

// TestFetchBlobRedirect checks that a 307 to a storage host is followed and
// that the storage host never sees the registry's Authorization header.
func TestFetchBlobRedirect(t *testing.T) {
	content := []byte("layer bytes stored elsewhere")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}

	var mu sync.Mutex
	var storageAuth []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Query().Get("sig") != "s3cr3t-signature" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		_, _ = w.Write(content)
	}))
	t.Cleanup(storage.Close)

	f := newFakeRegistry(t)
	f.user, f.pass = "alice", "pa55w0rd"
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		http.Redirect(w, r, storage.URL+"/bucket/"+desc.Digest.Encoded()+"?sig=s3cr3t-signature", http.StatusTemporaryRedirect)
		return true
	})
	r := f.repo(t, f.withCredential("alice", "pa55w0rd"))

	rc, err := r.FetchBlob(context.Background(), desc, 0)
	if err != nil {
		t.Fatalf("FetchBlob: %v", err)
	}
	got := readChecked(t, rc, nil)
	rc.Close()
	if !bytes.Equal(got, content) {
		t.Errorf("got %q, want %q", got, content)
	}

	var registryAuth []string
	for _, req := range f.reqs(http.MethodGet, "/blobs/") {
		registryAuth = append(registryAuth, req.Header.Get("Authorization"))
	}
	if len(registryAuth) == 0 || registryAuth[len(registryAuth)-1] == "" {
		t.Fatalf("the registry never got an Authorization header (%q); the test does not exercise stripping", registryAuth)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(storageAuth) != 1 {
		t.Fatalf("storage got %d requests, want 1", len(storageAuth))
	}
	if storageAuth[0] != "" {
		t.Errorf("storage received Authorization %q; registry credentials must not leave the registry", storageAuth[0])
	}
}
