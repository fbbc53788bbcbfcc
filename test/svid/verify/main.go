// An independent judge of X.509-SVIDs for tsmesh's tests: go-spiffe, the
// SPIFFE project's own Go library, reads each certificate chain it is given
// and says whether it is an X.509-SVID of the trust domain the bundle is for.
//
// Input (stdin, JSON):
//
//	{"trustDomain": "cluster.local", "bundle": "<PEM roots>",
//	 "certs": [{"name": "...", "chain": "<PEM leaf, then intermediates>", "key": "<PKCS#8 PEM>"}]}
//
// Output (stdout, JSON): [{"name": "...", "accepted": true, "id": "spiffe://..."},
// {"name": "...", "accepted": false, "error": "..."}], in the input's order.
//
// go-spiffe checks an SVID in two places, and the verdict takes both:
// x509svid.Parse, the rules an SVID must meet to be used at all (exactly one
// URI SAN holding a valid SPIFFE ID with a path, CA false, digitalSignature
// and neither keyCertSign nor cRLSign), and x509svid.Verify, what a peer
// checks (the chain to a root of the bundle for the ID's trust domain, the
// validity period, CA false, no keyCertSign or cRLSign). Parse needs the
// private key, which the tests have: they made the certificates.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type input struct {
	TrustDomain string `json:"trustDomain"`
	Bundle      string `json:"bundle"`
	Certs       []struct {
		Name  string `json:"name"`
		Chain string `json:"chain"`
		Key   string `json:"key"`
	} `json:"certs"`
}

type verdict struct {
	Name     string `json:"name"`
	Accepted bool   `json:"accepted"`
	ID       string `json:"id,omitempty"`
	Error    string `json:"error,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "svid-verify:", err)
		os.Exit(2)
	}
}

func run() error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("reading the input JSON from stdin: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(in.TrustDomain)
	if err != nil {
		return fmt.Errorf("trustDomain %q: %w", in.TrustDomain, err)
	}
	bundle, err := x509bundle.Parse(td, []byte(in.Bundle))
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	out := make([]verdict, 0, len(in.Certs))
	for _, c := range in.Certs {
		out = append(out, judge(c.Name, c.Chain, c.Key, bundle))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func judge(name, chain, key string, bundle *x509bundle.Bundle) verdict {
	svid, err := x509svid.Parse([]byte(chain), []byte(key))
	if err != nil {
		return verdict{Name: name, Error: err.Error()}
	}
	id, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		return verdict{Name: name, Error: err.Error()}
	}
	return verdict{Name: name, Accepted: true, ID: id.String()}
}
