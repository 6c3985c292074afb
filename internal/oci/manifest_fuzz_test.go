package oci

import (
	"bytes"
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fuzzMediaTypes are the types the fuzzer serves data as; kind picks one.
var fuzzMediaTypes = []string{
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifest,
	ocispec.MediaTypeImageIndex,
	MediaTypeDockerManifestList,
	"application/json",
}

// FuzzDecodeManifest checks that DecodeManifest and DecodeIndex never
// panic, and that what they accept survives a round trip: re-encoding and
// decoding again is accepted and gives the same value (compared by its
// encoding, since JSON cannot tell an empty map from a missing one).
func FuzzDecodeManifest(f *testing.F) {
	seeds := []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3,"annotations":{"org.opencontainers.image.title":"foo"}}],"artifactType":"application/vnd.example","annotations":{"a":"b"}}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3},"layers":[]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3},"layers":null,"subject":{"mediaType":"a/b","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3,"urls":["https://x"],"platform":{"os":"linux","architecture":"arm","variant":"v7","os.features":["f"]}}}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3,"platform":{"os":"linux","architecture":"amd64"}}],"annotations":{}}`,
		`{"schemaVersion":2,"manifests":[]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha512:` + string(bytes.Repeat([]byte("a"), 128)) + `","size":0},"layers":[],"annotations":{}}`,
		`{"schemaVersion":2,"schemaVersion":1}`,
		`{"schemaVersion":2.0}`,
		`{} {}`,
		`null`,
		``,
	}
	for _, s := range seeds {
		for kind := range fuzzMediaTypes {
			f.Add([]byte(s), uint8(kind))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		mt := fuzzMediaTypes[int(kind)%len(fuzzMediaTypes)]
		if IsIndexMediaType(mt) {
			idx, err := DecodeIndex(mt, data)
			if err != nil {
				return
			}
			roundTrip(t, idx, func(b []byte) (any, error) { return DecodeIndex(mt, b) })
			return
		}
		m, err := DecodeManifest(mt, data)
		if err != nil {
			return
		}
		if m.MediaType == "" {
			t.Fatal("decoded manifest has no media type")
		}
		roundTrip(t, m, func(b []byte) (any, error) { return DecodeManifest(mt, b) })
	})
}

func roundTrip(t *testing.T, v any, decode func([]byte) (any, error)) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding a decoded value: %v", err)
	}
	again, err := decode(enc)
	if err != nil {
		t.Fatalf("the re-encoded value %s is refused: %v", enc, err)
	}
	enc2, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("round trip changed the value:\nfirst  %s\nsecond %s", enc, enc2)
	}
}
