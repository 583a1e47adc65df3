package egress

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// maxCAFileBytes caps a CA bundle; the whole Mozilla set is about 250 KiB.
const maxCAFileBytes = 4 << 20

// LoadCAFile returns the system's roots plus every certificate in the PEM
// file at path, for Config.ServiceTLS.RootCAs: an operator's private model
// gateway is then trusted besides the public upstreams, not instead of
// them. The file must hold at least one certificate and nothing but
// certificates between any comment lines; anything else is ErrCAFile,
// since an operator who names a file means to trust something, and a
// typo or a key in its place would otherwise go unnoticed.
func LoadCAFile(path string) (*x509.CertPool, error) {
	certs, err := readCAFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system roots here: the file's are then all that is trusted.
		pool = x509.NewCertPool()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// readCAFile parses the certificates of a PEM file.
func readCAFile(path string) ([]*x509.Certificate, error) {
	data, err := readFileCapped(path, maxCAFileBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: %s holds a %q block; want only certificates", ErrCAFile, path, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: certificate %d: %w", ErrCAFile, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCAFile, path)
	}
	return certs, nil
}
