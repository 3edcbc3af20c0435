package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// requiredHeaders are the -tls-require-header flags: headers a request over TLS must carry,
// as a scraper's bearer token and tenant header would be checked by a real service's proxy.
type requiredHeaders []header

type header struct{ name, value string }

func (r *requiredHeaders) String() string {
	var parts []string
	for _, h := range *r {
		parts = append(parts, h.name+": "+h.value)
	}
	return strings.Join(parts, ", ")
}

func (r *requiredHeaders) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q is not \"Name: value\"", v)
	}
	*r = append(*r, header{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

// guard answers 401, naming the header, to requests that lack one of the required headers.
func (r requiredHeaders) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for _, h := range r {
			if req.Header.Get(h.name) != h.value {
				http.Error(w, "goservice: missing or wrong "+h.name+" header", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}

// serveTLS serves handler over TLS (HTTP/2 or HTTP/1.1, as the client offers) on addr; with
// clientCA, only to clients whose certificate that CA signed.
func serveTLS(addr, certFile, keyFile, clientCA string, handler http.Handler) (*http.Server, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	server := &http.Server{Handler: handler, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("serving TLS on %s: %v", addr, err)
		}
	}()
	return server, nil
}
