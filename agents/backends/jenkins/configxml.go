package jenkins

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// xmlNode is one element of a config.xml: its name, attributes (without
// "plugin", which Jenkins rewrites to "name@version"), trimmed text and
// child elements in document order.
type xmlNode struct {
	name     string
	attrs    map[string]string
	text     string
	children []*xmlNode
}

// parseConfigXML reads a config.xml into its root element. The XML
// declaration, comments and processing instructions are ignored.
func parseConfigXML(doc string) (*xmlNode, error) {
	// Jenkins declares XML 1.1, which encoding/xml refuses; config.xml uses
	// nothing of 1.1 beyond the declaration, so it is dropped.
	doc = strings.TrimSpace(doc)
	if strings.HasPrefix(doc, "<?xml") {
		if i := strings.Index(doc, "?>"); i >= 0 {
			doc = doc[i+2:]
		}
	}
	dec := xml.NewDecoder(strings.NewReader(doc))
	var stack []*xmlNode
	var root *xmlNode
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{name: t.Name.Local, attrs: map[string]string{}}
			for _, a := range t.Attr {
				if a.Name.Local != "plugin" {
					n.attrs[a.Name.Local] = a.Value
				}
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			} else if root == nil {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			n := stack[len(stack)-1]
			n.text = strings.TrimSpace(n.text)
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	return root, nil
}

// covers reports whether have holds every setting of want: the same
// element name, want's attributes (but "plugin") with the same values, the
// same text where want has text, and for each child of want the child of
// have with the same name at the same position among its namesakes,
// recursively. Elements only have holds (Jenkins' defaults such as
// <actions/>, job properties a pipeline's options set) do not count.
func covers(have, want *xmlNode) bool {
	if have.name != want.name {
		return false
	}
	for k, v := range want.attrs {
		if have.attrs[k] != v {
			return false
		}
	}
	if len(want.children) == 0 {
		return want.text == "" || have.text == want.text
	}
	seen := map[string]int{}
	for _, c := range want.children {
		k := seen[c.name]
		seen[c.name]++
		var match *xmlNode
		for _, h := range have.children {
			if h.name != c.name {
				continue
			}
			if k == 0 {
				match = h
				break
			}
			k--
		}
		if match == nil || !covers(match, c) {
			return false
		}
	}
	return true
}

// SameConfig reports whether the config.xml Jenkins answers (current)
// already has every setting of desired, so that posting desired would
// change nothing branchml manages. Jenkins never returns a config.xml as it
// was posted: it re-serializes the job (XStream2.toXMLUTF8 writes
// <?xml version="1.1" encoding="UTF-8"?>, plugin="workflow-job@<version>",
// <actions/>), and a pipeline's options add job properties; none of that is
// a change. An error names the document that does not parse.
func SameConfig(current, desired string) (bool, error) {
	have, err := parseConfigXML(current)
	if err != nil {
		return false, fmt.Errorf("config.xml from Jenkins: %w", err)
	}
	want, err := parseConfigXML(desired)
	if err != nil {
		return false, fmt.Errorf("config.xml to send: %w", err)
	}
	return covers(have, want), nil
}

// ScriptApprovalHash is the hash under which Jenkins' script-security
// plugin approves a whole Groovy script (ScriptApproval, Hasher SHA512):
// "SHA512:" and the lower-case hex SHA-512 of "groovy:" followed by the
// script's UTF-8 bytes. A Job DSL script run outside the sandbox (jobDsl
// with sandbox: false) runs only once its hash is approved; JCasC takes
// the hash under security.scriptApproval.approvedScriptHashes.
func ScriptApprovalHash(script []byte) string {
	return "SHA512:" + sha512Hex(bytes.Join([][]byte{[]byte("groovy:"), script}, nil))
}
