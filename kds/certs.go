package kds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
)

// CertFiles are the PEM files of the KDS server's TLS: a CA zones pin and a
// server certificate signed by it.
type CertFiles struct {
	CA   string // ca.crt: give it to zones (ClientConfig.CAFile)
	Cert string // tls.crt
	Key  string // tls.key
}

// EnsureCerts returns the CA and server certificate in dir, generating a
// self-signed CA and a server certificate for hosts (DNS names or IPs;
// "localhost" and 127.0.0.1 when empty) on first start. Existing files are
// kept as they are, so an operator can put their own there.
func EnsureCerts(dir string, hosts []string) (CertFiles, error) {
	files := CertFiles{
		CA:   filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, "tls.crt"),
		Key:  filepath.Join(dir, "tls.key"),
	}
	have := 0
	for _, f := range []string{files.CA, files.Cert, files.Key} {
		if _, err := os.Stat(f); err == nil {
			have++
		} else if !errors.Is(err, os.ErrNotExist) {
			return files, fmt.Errorf("kds: %w", err)
		}
	}
	switch have {
	case 3:
		return files, nil
	case 0:
	default:
		return files, fmt.Errorf("kds: %s holds only some of ca.crt, tls.crt and tls.key; provide all three or none", dir)
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, fmt.Errorf("kds: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "meshtrace KDS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("kds: create CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return files, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, err
	}
	srv := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "meshtrace KDS server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("kds: create server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return files, err
	}
	// The key is written last: a crash in between leaves an incomplete set
	// that the next start reports instead of silently regenerating.
	if err := writePEM(files.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return files, err
	}
	if err := writePEM(files.Cert, "CERTIFICATE", srvDER, 0o644); err != nil {
		return files, err
	}
	if err := writePEM(files.Key, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return files, err
	}
	return files, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("kds: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("kds: %w", err)
	}
	return nil
}

// ServerCredentials loads the KDS server's certificate for grpc.Creds.
func ServerCredentials(certFile, keyFile string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kds: load server certificate: %w", err)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// clientTLS returns a TLS config trusting only the CA in caFile.
func clientTLS(caFile string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("kds: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("kds: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
