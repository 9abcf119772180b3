package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki writes, into dir, what the API server needs: ca.crt/ca.key (the
// cluster CA), apiserver.crt/.key (serving, for 127.0.0.1 and localhost),
// sa.key/sa.pub (service account token signing) and tokens.csv (a static
// admin token in group system:masters); for the aggregation layer
// front-proxy-ca.crt and front-proxy-client.crt/.key (CN
// front-proxy-client: the API server's identity towards an extension API
// server such as metrics-server, as kubeadm names them); kubelet.crt/.key
// (the kubelet's serving certificate for NodeIP and NodeName) and
// metrics-server.crt/.key (for NodeIP and metrics-server.kube-system.svc,
// the name the aggregator verifies), both signed by the cluster CA. It
// returns the admin token.
func pki(dir string) (string, error) {
	now := time.Now()
	ca, caDER, caKey, err := selfSignedCA("branchml-testbed-ca", now)
	if err != nil {
		return "", err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) (der []byte, key *ecdsa.PrivateKey, err error) {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns, IPAddresses: ips,
		}
		der, err = x509.CreateCertificate(rand.Reader, t, signer, &key.PublicKey, signerKey)
		return der, key, err
	}
	fpCA, fpDER, fpKey, err := selfSignedCA("branchml-testbed-front-proxy-ca", now)
	if err != nil {
		return "", err
	}
	fpcDER, fpcKey, err := leaf(2, "front-proxy-client", x509.ExtKeyUsageClientAuth, nil, nil, fpCA, fpKey)
	if err != nil {
		return "", err
	}
	nodeIP := []net.IP{net.ParseIP(NodeIP)}
	kubeletDER, kubeletKey, err := leaf(3, NodeName, x509.ExtKeyUsageServerAuth, []string{NodeName}, nodeIP, ca, caKey)
	if err != nil {
		return "", err
	}
	msDER, msKey, err := leaf(4, "metrics-server", x509.ExtKeyUsageServerAuth,
		[]string{"metrics-server.kube-system.svc", "metrics-server.kube-system.svc.cluster.local"}, nodeIP, ca, caKey)
	if err != nil {
		return "", err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	files := map[string][]byte{
		"ca.crt":        pemBlock("CERTIFICATE", caDER),
		"ca.key":        ecKey(caKey),
		"apiserver.crt": pemBlock("CERTIFICATE", srvDER),
		"apiserver.key": ecKey(srvKey),
		"sa.key":        ecKey(saKey),
		"sa.pub":        pubKey(&saKey.PublicKey),
		"tokens.csv":    []byte(token + ",admin,admin-uid,system:masters\n"),

		"front-proxy-ca.crt":     pemBlock("CERTIFICATE", fpDER),
		"front-proxy-client.crt": pemBlock("CERTIFICATE", fpcDER),
		"front-proxy-client.key": ecKey(fpcKey),
		"kubelet.crt":            pemBlock("CERTIFICATE", kubeletDER),
		"kubelet.key":            ecKey(kubeletKey),
		"metrics-server.crt":     pemBlock("CERTIFICATE", msDER),
		"metrics-server.key":     ecKey(msKey),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return token, nil
}

// selfSignedCA makes a CA named cn, valid from an hour before now for 30
// days: its certificate parsed and DER-encoded, and its key.
func selfSignedCA(cn string, now time.Time) (*x509.Certificate, []byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, der, key, err
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func ecKey(k *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(k)
	return pemBlock("EC PRIVATE KEY", der)
}

func pubKey(k *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(k)
	return pemBlock("PUBLIC KEY", der)
}
