package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// FuzzTLSConfig feeds certSecretRef contents (ca.crt, tls.crt, tls.key,
// straight from a Secret) to TLSConfig: it never panics, and what it
// accepts trusts the extra CAs or carries the client certificate.
func FuzzTLSConfig(f *testing.F) {
	cert, key := selfSigned(f)
	f.Add(cert, []byte(nil), []byte(nil))
	f.Add(cert, cert, key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), cert, []byte("junk"))
	f.Add([]byte("not pem"), []byte(nil), key)
	f.Add(append(append([]byte{}, cert...), "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"...), key, cert)
	f.Fuzz(func(t *testing.T, caPEM, certPEM, keyPEM []byte) {
		conf, err := TLSConfig(Options{CAPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM})
		if err != nil {
			return
		}
		if len(caPEM) > 0 && conf.RootCAs == nil {
			t.Fatal("CA PEM accepted but no root pool set")
		}
		if len(certPEM) > 0 && len(keyPEM) > 0 && len(conf.Certificates) != 1 {
			t.Fatalf("client certificate accepted but %d certificates set", len(conf.Certificates))
		}
	})
}

// selfSigned returns a self-signed certificate and its key, in PEM.
func selfSigned(f *testing.F) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fuzz"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
