package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

// pki is a CA the test makes, and files of certificates it signed.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	// CAFile is the CA's certificate (PEM).
	CAFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CAFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for a server (127.0.0.1, localhost) or a
// client, and returns it loaded and as cert and key files.
func (p *pki) issue(t *testing.T, name string, server bool) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// tlsFront serves TLS (mTLS when clients is not nil: a client
// certificate signed by it is required) on loopback in front of the dev
// server, as a TLS-terminating load balancer does, and returns its
// address.
func tlsFront(t *testing.T, cert tls.Certificate, clients *x509.CertPool) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if clients != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clients
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				up, err := net.Dial("tcp", devServer.FrontendHostPort())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// rawCodec passes gRPC messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// apiKeyFront is a gRPC proxy on loopback in front of the dev server that
// lets a call through only with "authorization: Bearer <key>", as Temporal
// Cloud checks an API key, and returns its address.
func apiKeyFront(t *testing.T, key string) string {
	t.Helper()
	backend, err := grpc.NewClient(devServer.FrontendHostPort(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+key {
			return status.Error(codes.Unauthenticated, "API key missing or wrong")
		}
		method, _ := grpc.MethodFromServerStream(ss)
		out := md.Copy()
		out.Delete("authorization")
		ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ss.Context(), out))
		defer cancel()
		cs, err := backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		go func() {
			for {
				var m []byte
				if err := ss.RecvMsg(&m); err != nil {
					_ = cs.CloseSend()
					return
				}
				if err := cs.SendMsg(&m); err != nil {
					return
				}
			}
		}()
		for first := true; ; first = false {
			var m []byte
			err := cs.RecvMsg(&m)
			if first {
				if h, herr := cs.Header(); herr == nil {
					_ = ss.SendHeader(h)
				}
			}
			if errors.Is(err, io.EOF) {
				ss.SetTrailer(cs.Trailer())
				return nil
			}
			if err != nil {
				return err
			}
			if err := ss.SendMsg(&m); err != nil {
				return err
			}
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestSecuredTemporal_SyncsThroughTLSmTLSAndAPIKeyFronts: a worker process
// configured only by the Temporal environment variables, and a starter
// configured by tether's own keys, run a sync through a TLS front, an mTLS
// front and a front that checks an API key; a wrong CA, a missing client
// certificate and a wrong API key stop the worker at start with a message
// that says which setting to fix.
func TestSecuredTemporal_SyncsThroughTLSmTLSAndAPIKeyFronts(t *testing.T) {
	ca := newPKI(t, "test")
	serverCert, _, _ := ca.issue(t, "frontend", true)
	_, clientCert, clientKey := ca.issue(t, "worker", false)
	other := newPKI(t, "other")
	bin := workerBinary(t)

	tlsAddr := tlsFront(t, serverCert, nil)
	mtlsAddr := tlsFront(t, serverCert, ca.pool)
	keyAddr := apiKeyFront(t, "key-for-test")

	for _, c := range []struct {
		name    string
		env     []string
		starter config.Temporal
	}{
		{"TLS", []string{"TEMPORAL_ADDRESS=" + tlsAddr, "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" + ca.CAFile},
			config.Temporal{Address: tlsAddr, TLS: config.TemporalTLS{ServerCACert: ca.CAFile}}},
		{"mTLS", []string{"TEMPORAL_ADDRESS=" + mtlsAddr, "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" + ca.CAFile,
			"TEMPORAL_TLS_CLIENT_CERT_PATH=" + clientCert, "TEMPORAL_TLS_CLIENT_KEY_PATH=" + clientKey, "TEMPORAL_TLS_SERVER_NAME=localhost"},
			config.Temporal{Address: mtlsAddr, TLS: config.TemporalTLS{ServerCACert: ca.CAFile, ClientCert: clientCert, ClientKey: clientKey}}},
		{"API key", []string{"TEMPORAL_ADDRESS=" + keyAddr, "TEMPORAL_API_KEY=key-for-test", "TEMPORAL_TLS=false"},
			config.Temporal{Address: keyAddr, APIKey: "key-for-test"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "API key" {
				// tether's key with the plain-text front: TLS off through the
				// Temporal environment, as TEMPORAL_TLS=false says.
				t.Setenv("TEMPORAL_TLS", "false")
			}
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 8, Contacts: 120}, noWorker: true})
			w := s.startWorkerProcess("secured", t.TempDir(), s.workerEnv(c.env...), bin)
			waitPolling(t, w)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			starter := c.starter
			starter.Namespace = "default"
			cl, err := app.Dial(ctx, starter, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("starter through the front: %v", err)
			}
			defer cl.Close()
			run, err := cli.StartSync(ctx, cl, s.taskQueue, datasync.Input{Integration: "crm-contacts", Trigger: "test"})
			if err != nil {
				t.Fatal(err)
			}
			var res datasync.Result
			if err := run.Get(ctx, &res); err != nil || res.Status != progress.StatusCompleted || res.Counts.Fetched != 120 {
				t.Fatalf("sync through the %s front: %+v, %v", c.name, res, err)
			}
		})
	}

	for _, c := range []struct {
		name string
		env  []string
		want []string
	}{
		{"wrong CA", []string{"TEMPORAL_ADDRESS=" + tlsAddr, "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" + other.CAFile},
			[]string{"is not trusted", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"}},
		{"no client certificate", []string{"TEMPORAL_ADDRESS=" + mtlsAddr, "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" + ca.CAFile},
			[]string{"client certificate", "TEMPORAL_TLS_CLIENT_CERT_PATH"}},
		{"wrong API key", []string{"TEMPORAL_ADDRESS=" + keyAddr, "TEMPORAL_API_KEY=wrong-key", "TEMPORAL_TLS=false"},
			[]string{"refused the credentials", "TEMPORAL_API_KEY"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, stackOptions{noWorker: true})
			w := s.startWorkerProcess("refused", t.TempDir(), s.workerEnv(append(c.env, "TETHER_TEMPORAL_CONNECT_TIMEOUT=5s")...), bin)
			select {
			case <-w.Done():
			case <-time.After(time.Minute):
				t.Fatalf("the worker kept running; its log:\n%s", w.logTail(20))
			}
			exited, err := w.Exited()
			log := w.logTail(20)
			if !exited || err == nil {
				t.Errorf("the worker exited %v with %v, want a failure; log:\n%s", exited, err, log)
			}
			for _, want := range c.want {
				if !strings.Contains(log, want) {
					t.Errorf("the worker's log does not say %q:\n%s", want, log)
				}
			}
			if strings.Contains(log, "wrong-key") {
				t.Errorf("the worker's log shows the API key:\n%s", log)
			}
		})
	}
}
