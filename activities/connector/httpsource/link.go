package httpsource

import "strings"

// webLink is one link-value of an RFC 8288 Link header.
type webLink struct {
	Target string
	Rels   []string          // relation types, lower-cased
	Params map[string]string // other parameters, names lower-cased
}

// parseLinks parses the values of one or more Link header fields. It is
// lenient in what it skips: a malformed link-value is dropped up to the next
// comma outside angle brackets and quotes, and the rest is still read.
//
// It is hand-written rather than taken from a library because the common Go
// ones split the field on every "," and ";", which breaks targets such as
// <...?fields=id,name&page=2> (commas are legal in URIs) and does not read
// rel="next last" as two relation types; both occur in real APIs.
func parseLinks(values []string) []webLink {
	var links []webLink
	for _, v := range values {
		links = appendLinks(links, v)
	}
	return links
}

func appendLinks(links []webLink, s string) []webLink {
	i := 0
	for i < len(s) {
		i = skipSpaceAndCommas(s, i)
		if i >= len(s) {
			break
		}
		if s[i] != '<' {
			i = skipToComma(s, i)
			continue
		}
		end := strings.IndexByte(s[i+1:], '>')
		if end < 0 {
			break
		}
		l := webLink{Target: strings.TrimSpace(s[i+1 : i+1+end])}
		i += end + 2
		ok := !strings.Contains(l.Target, "<") // not a URI-Reference
	params:
		for i < len(s) {
			i = skipSpace(s, i)
			if i >= len(s) || s[i] == ',' {
				break
			}
			if s[i] != ';' {
				ok = false
				break
			}
			i = skipSpace(s, i+1)
			start := i
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			name := strings.ToLower(s[start:i])
			if name == "" {
				if i < len(s) && (s[i] == ';' || s[i] == ',') {
					continue // empty parameter: ignore it
				}
				ok = false
				break
			}
			i = skipSpace(s, i)
			var val string
			if i < len(s) && s[i] == '=' {
				i = skipSpace(s, i+1)
				var good bool
				val, i, good = readValue(s, i)
				if !good {
					ok = false
					break params
				}
			}
			if name == "rel" {
				if l.Rels == nil { // RFC 8288 §3.3: only the first rel counts
					l.Rels = strings.Fields(strings.ToLower(val))
					if l.Rels == nil {
						l.Rels = []string{}
					}
				}
				continue
			}
			if l.Params == nil {
				l.Params = map[string]string{}
			}
			if _, dup := l.Params[name]; !dup {
				l.Params[name] = val
			}
		}
		if !ok {
			i = skipToComma(s, i)
			continue
		}
		links = append(links, l)
	}
	return links
}

// readValue reads a token or a quoted-string starting at i.
func readValue(s string, i int) (string, int, bool) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for i++; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), i + 1, true
			default:
				b.WriteByte(s[i])
			}
		}
		return "", i, false // unterminated
	}
	start := i
	for i < len(s) && s[i] != ';' && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	return s[start:i], i, true
}

// nextLink returns the target of the first link whose relation types
// include "next".
func nextLink(values []string) (string, bool) {
	for _, l := range parseLinks(values) {
		for _, r := range l.Rels {
			if r == "next" {
				return l.Target, true
			}
		}
	}
	return "", false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func skipSpaceAndCommas(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
		i++
	}
	return i
}

// skipToComma moves past the next comma that is outside angle brackets and
// quotes, so that one bad link-value does not hide the ones after it.
func skipToComma(s string, i int) int {
	inAngle, inQuote := false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ',' && !inAngle:
			return i + 1
		}
	}
	return i
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
