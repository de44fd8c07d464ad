package temporaltest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TLSFront is a real TLS endpoint in front of a dev server (which serves
// plain gRPC only): it terminates TLS — mutual when asked, requiring a
// client certificate signed by its CA — and forwards the connection's bytes
// to the server, as a TLS-terminating load balancer in front of a
// self-hosted cluster does. Its files (PEM) are in Dir.
type TLSFront struct {
	// HostPort clients dial, with ServerName as the certificate's name.
	HostPort, ServerName string
	// CA signed the server's and the client's certificates; OtherCA signed
	// nothing this front accepts or presents.
	CA, OtherCA string
	// ClientCert and ClientKey are a client certificate the front accepts.
	ClientCert, ClientKey string

	l  net.Listener
	wg sync.WaitGroup
}

// StartTLSFront starts a TLS front for the server at backend on a free
// port of 127.0.0.1; with mutual, clients must present a certificate signed
// by CA. It stops with the test.
func StartTLSFront(t testing.TB, backend string, mutual bool) *TLSFront {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "headstart-test-ca")
	other, _ := newCA(t, "someone-else's-ca")
	f := &TLSFront{ServerName: "temporal.headstart.test",
		CA: writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw), OtherCA: writePEM(t, dir, "other-ca.pem", "CERTIFICATE", other.Raw)}
	serverCert := leaf(t, ca, caKey, f.ServerName, x509.ExtKeyUsageServerAuth)
	clientCert := leaf(t, ca, caKey, "headstart-worker", x509.ExtKeyUsageClientAuth)
	f.ClientCert = writePEM(t, dir, "client.pem", "CERTIFICATE", clientCert.Certificate[0])
	key, err := x509.MarshalPKCS8PrivateKey(clientCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	f.ClientKey = writePEM(t, dir, "client-key.pem", "PRIVATE KEY", key)

	conf := &tls.Config{Certificates: []tls.Certificate{serverCert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if mutual {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
		// TLS 1.2: a refused client certificate fails the handshake itself.
		// With TLS 1.3 the client learns of it only at its first write, as
		// the server's alert or a broken pipe, whichever comes first.
		conf.MaxVersion = tls.VersionTLS12
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	f.l, f.HostPort = l, l.Addr().String()
	f.wg.Add(1)
	go f.serve(backend)
	t.Cleanup(f.stop)
	return f
}

func (f *TLSFront) serve(backend string) {
	defer f.wg.Done()
	for {
		in, err := f.l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			if err := in.(*tls.Conn).Handshake(); err != nil {
				return // a client the front refuses
			}
			out, err := net.Dial("tcp", backend)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if c, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = c.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}

func (f *TLSFront) stop() {
	_ = f.l.Close()
	f.wg.Wait()
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func leaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
