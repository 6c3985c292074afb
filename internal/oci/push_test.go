package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPushBlob(t *testing.T) {
	content := []byte("blob content to upload")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(content), Size: int64(len(content))}
	empty := ocispec.Descriptor{Digest: digest.FromBytes(nil), Size: 0}

	tests := []struct {
		name        string
		desc        ocispec.Descriptor
		content     []byte
		setup       func(f *fakeRegistry)
		wantErr     error
		anyErr      bool
		wantStored  bool
		wantPOSTs   int
		wantPUTs    int // -1: the PUT may or may not reach the server
		checkPUTURL func(t *testing.T, req fakeRequest)
	}{
		{
			name: "relative Location", desc: desc, content: content, wantStored: true, wantPOSTs: 1, wantPUTs: 1,
			checkPUTURL: func(t *testing.T, req fakeRequest) {
				if req.RawQuery != "digest="+strings.ReplaceAll(desc.Digest.String(), ":", "%3A") {
					t.Errorf("PUT query = %q", req.RawQuery)
				}
			},
		},
		{
			name: "Location with a query string", desc: desc, content: content, wantStored: true, wantPOSTs: 1, wantPUTs: 1,
			setup: func(f *fakeRegistry) { f.locationQuery = "?_state=abc%2Fdef&other=1" },
			checkPUTURL: func(t *testing.T, req fakeRequest) {
				q := parseQuery(t, req.RawQuery)
				if q.Get("_state") != "abc/def" || q.Get("other") != "1" || q.Get("digest") != desc.Digest.String() {
					t.Errorf("PUT query %q lost the session state or lacks the digest", req.RawQuery)
				}
			},
		},
		{
			name: "absolute same-origin Location", desc: desc, content: content, wantStored: true, wantPOSTs: 1, wantPUTs: 1,
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPost {
						f.mu.Lock()
						f.uploads["abs"] = testRepo
						f.mu.Unlock()
						w.Header().Set("Location", "http://"+f.host+"/v2/test/repo/blobs/uploads/abs")
						w.WriteHeader(http.StatusAccepted)
						return true
					}
					return false
				})
			},
		},
		{
			name: "existing blob is skipped", desc: desc, content: content, wantStored: true,
			setup: func(f *fakeRegistry) { f.putBlob(testRepo, "", content) },
		},
		{
			name: "Location on another origin", desc: desc, content: content, wantPOSTs: 1, anyErr: true,
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPost {
						w.Header().Set("Location", "http://127.0.0.2:1/upload?secret=x")
						w.WriteHeader(http.StatusAccepted)
						return true
					}
					return false
				})
			},
		},
		{
			name: "POST without Location", desc: desc, content: content, wantPOSTs: 1, anyErr: true,
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPost {
						w.WriteHeader(http.StatusAccepted)
						return true
					}
					return false
				})
			},
		},
		{name: "content longer than descriptor", desc: desc, content: append(append([]byte(nil), content...), "more"...), wantErr: ErrSizeMismatch, wantPOSTs: 1, wantPUTs: -1},
		{name: "content one byte longer", desc: desc, content: append(append([]byte(nil), content...), '!'), wantErr: ErrSizeMismatch, wantPOSTs: 1, wantPUTs: -1},
		{name: "content shorter than descriptor", desc: desc, content: content[:5], wantErr: ErrSizeMismatch, wantPOSTs: 1, wantPUTs: -1},
		{name: "content with other digest", desc: desc, content: bytes.ToUpper(content), wantErr: ErrDigestMismatch, wantPOSTs: 1, wantPUTs: 1},
		{name: "empty blob", desc: empty, content: nil, wantStored: true, wantPOSTs: 1, wantPUTs: 1},
		{name: "empty descriptor, content not empty", desc: empty, content: []byte("x"), wantErr: ErrSizeMismatch, wantPOSTs: 1},
		{name: "invalid digest", desc: ocispec.Descriptor{Digest: "sha256:1", Size: 1}, content: []byte("x"), anyErr: true},
		{
			name: "upload refused", desc: desc, content: content, wantErr: ErrDenied, wantPOSTs: 1,
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPost {
						writeRegistryError(w, http.StatusForbidden, "DENIED", "read-only repository")
						return true
					}
					return false
				})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			err := f.repo(t).PushBlob(context.Background(), tt.desc, bytes.NewReader(tt.content))
			switch {
			case tt.wantErr != nil || tt.anyErr:
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("PushBlob err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("PushBlob: %v", err)
			}
			if got, ok := f.blob(testRepo, tt.desc.Digest); ok != tt.wantStored || (ok && !bytes.Equal(got, tt.content)) {
				t.Errorf("registry has blob %v (%q), want %v", ok, got, tt.wantStored)
			}
			if n := len(f.reqs(http.MethodPost, "/blobs/uploads/")); n != tt.wantPOSTs {
				t.Errorf("%d POSTs, want %d", n, tt.wantPOSTs)
			}
			puts := f.reqs(http.MethodPut, "/blobs/uploads/")
			if tt.wantPUTs >= 0 && len(puts) != tt.wantPUTs {
				t.Errorf("%d PUTs, want %d", len(puts), tt.wantPUTs)
			}
			if tt.checkPUTURL != nil && len(puts) == 1 {
				tt.checkPUTURL(t, puts[0])
			}
		})
	}
}

func TestPushBlobNoPartialUploadOnLongContent(t *testing.T) {
	// The registry must never receive the declared number of bytes from
	// content that turns out longer: it would accept the blob.
	content := bytes.Repeat([]byte("0123456789"), 10000)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	for i := 0; i < 20; i++ {
		f := newFakeRegistry(t)
		long := append(append([]byte(nil), content...), 'x')
		err := f.repo(t).PushBlob(context.Background(), desc, bytes.NewReader(long))
		if !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("attempt %d: err = %v, want ErrSizeMismatch", i, err)
		}
		if _, ok := f.blob(testRepo, desc.Digest); ok {
			t.Fatalf("attempt %d: the registry stored the blob from content longer than its descriptor", i)
		}
	}
}

func TestMountBlob(t *testing.T) {
	content := []byte("shared layer")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	getContent := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	tests := []struct {
		name       string
		from       string
		refuse     bool
		getContent func() (io.ReadCloser, error)
		wantErr    error
		anyErr     bool
		wantPUTs   int
		wantStored bool
	}{
		{name: "mounted (201)", from: "other/repo", getContent: getContent, wantStored: true},
		{name: "mounted without getContent", from: "other/repo", wantStored: true},
		{name: "declined (202), uploaded instead", from: "other/repo", refuse: true, getContent: getContent, wantPUTs: 1, wantStored: true},
		{name: "declined (202) without getContent", from: "other/repo", refuse: true, wantErr: ErrUnsupported},
		{name: "source lacks the blob, uploaded instead", from: "empty/repo", getContent: getContent, wantPUTs: 1, wantStored: true},
		{name: "getContent fails", from: "other/repo", refuse: true, getContent: func() (io.ReadCloser, error) { return nil, errors.New("gone") }, anyErr: true},
		{name: "invalid source repository", from: "Not/Valid", getContent: getContent, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.putBlob("other/repo", "", content)
			f.refuseMount = tt.refuse
			err := f.repo(t).MountBlob(context.Background(), desc, tt.from, tt.getContent)
			switch {
			case tt.wantErr != nil || tt.anyErr:
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("MountBlob err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("MountBlob: %v", err)
			}
			if _, ok := f.blob(testRepo, desc.Digest); ok != tt.wantStored {
				t.Errorf("blob stored = %v, want %v", ok, tt.wantStored)
			}
			if n := len(f.reqs(http.MethodPut, "/blobs/uploads/")); n != tt.wantPUTs {
				t.Errorf("%d PUTs, want %d", n, tt.wantPUTs)
			}
			if posts := f.reqs(http.MethodPost, "/blobs/uploads/"); len(posts) == 1 {
				q := parseQuery(t, posts[0].RawQuery)
				if q.Get("mount") != desc.Digest.String() || q.Get("from") != tt.from {
					t.Errorf("mount query = %q", posts[0].RawQuery)
				}
			}
		})
	}
}

func TestMountBlobCrossOriginLocation(t *testing.T) {
	f := newFakeRegistry(t)
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Location", "http://127.0.0.2:1/upload")
		w.WriteHeader(http.StatusAccepted)
		return true
	})
	called := false
	err := f.repo(t).MountBlob(context.Background(), ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}, "other/repo",
		func() (io.ReadCloser, error) { called = true; return io.NopCloser(strings.NewReader("x")), nil })
	if err == nil || !strings.Contains(err.Error(), "another origin") {
		t.Fatalf("err = %v, want a refusal of the other origin", err)
	}
	if called {
		t.Error("content was requested for an upload that was refused")
	}
}

func TestPushManifest(t *testing.T) {
	body := imageManifest(t)
	d := digest.FromBytes(body)
	tests := []struct {
		name    string
		ref     string
		max     int64
		echo    string // Docker-Content-Digest the registry answers with ("" = honest)
		wantErr error
		anyErr  bool
		wantTag string
	}{
		{name: "by tag", ref: "v1", wantTag: "v1"},
		{name: "by its digest", ref: d.String()},
		{name: "empty ref pushes by digest", ref: ""},
		{name: "by another digest", ref: digest.FromString("x").String(), wantErr: ErrDigestMismatch},
		{name: "invalid tag", ref: "-bad", anyErr: true},
		{name: "registry echoes another digest", ref: "v1", echo: digest.FromString("y").String(), wantErr: ErrDigestMismatch},
		{name: "over the limit", ref: "v1", max: int64(len(body)) - 1, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			if tt.echo != "" {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Docker-Content-Digest", tt.echo)
					w.WriteHeader(http.StatusCreated)
					return true
				})
			}
			var mods []func(*Options)
			if tt.max > 0 {
				mods = append(mods, withMaxManifest(tt.max))
			}
			got, err := f.repo(t, mods...).PushManifest(context.Background(), tt.ref, ocispec.MediaTypeImageManifest, body)
			if tt.wantErr != nil || tt.anyErr {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body))}
			if got.MediaType != want.MediaType || got.Digest != want.Digest || got.Size != want.Size {
				t.Errorf("descriptor = %+v, want %+v", got, want)
			}
			m, _, ok := f.manifest(testRepo, d.String())
			if !ok || !bytes.Equal(m.data, body) || m.mediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("registry holds %v %q %q", ok, m.mediaType, m.data)
			}
			if tt.wantTag != "" {
				if _, dg, ok := f.manifest(testRepo, tt.wantTag); !ok || dg != d.String() {
					t.Errorf("tag %s -> %s, want %s", tt.wantTag, dg, d)
				}
			}
			puts := f.reqs(http.MethodPut, "/manifests/")
			if len(puts) != 1 || puts[0].Header.Get("Content-Type") != ocispec.MediaTypeImageManifest {
				t.Errorf("PUT requests %+v", puts)
			}
		})
	}
}

func TestTag(t *testing.T) {
	f := newFakeRegistry(t)
	body := imageManifest(t)
	desc := f.putManifest(testRepo, "", ocispec.MediaTypeImageManifest, body)
	r := f.repo(t)
	if err := r.Tag(context.Background(), desc, "release"); err != nil {
		t.Fatal(err)
	}
	if _, dg, ok := f.manifest(testRepo, "release"); !ok || dg != desc.Digest.String() {
		t.Errorf("tag release -> %s (%v), want %s", dg, ok, desc.Digest)
	}
	if err := r.Tag(context.Background(), desc, "bad tag"); err == nil {
		t.Error("Tag accepted an invalid tag")
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("m"), Size: 3}
	if err := r.Tag(context.Background(), missing, "x"); !errors.Is(err, ErrManifestUnknown) {
		t.Errorf("Tag of a missing manifest: %v, want ErrManifestUnknown", err)
	}
	wrongSize := desc
	wrongSize.Size++
	if err := r.Tag(context.Background(), wrongSize, "y"); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("Tag with a wrong size: %v, want ErrSizeMismatch", err)
	}
	if _, _, ok := f.manifest(testRepo, "y"); ok {
		t.Error("a tag was written despite the size mismatch")
	}
}

// TestPushWithBasicAuth runs a push against a registry that wants Basic
// auth on every request, including the non-replayable upload PUT.
func TestPushWithBasicAuth(t *testing.T) {
	f := newFakeRegistry(t)
	f.user, f.pass = "bob", "hunter2"
	r := f.repo(t, f.withCredential("bob", "hunter2"))
	content := []byte("authenticated upload")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	if err := r.PushBlob(context.Background(), desc, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.blob(testRepo, desc.Digest); !ok {
		t.Fatal("blob not stored")
	}
}
