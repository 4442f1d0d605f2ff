package resource

// Matchers for the names, labels, tags and hostnames validation checks,
// byte by byte instead of through regular expressions (every write checks
// several). Each accepts exactly what its pattern, kept beside it, accepts:
// FuzzNameMatchersMatchPatterns compares them.

// isDNS1123 is `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`:
// dot-separated labels of lower case alphanumerics and '-', each starting
// and ending with an alphanumeric.
func isDNS1123(s string) bool { return dottedLabels(s, isDNSChar) }

// isHostname is `^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*\.?$`:
// isDNS1123 with upper case and '_' too, and one dot allowed at the end.
func isHostname(s string) bool {
	if n := len(s); n > 0 && s[n-1] == '.' {
		s = s[:n-1]
	}
	return dottedLabels(s, isHostChar)
}

// dottedLabels reports whether s is labels separated by single dots, each
// of bytes for which inLabel is true and neither starting nor ending with
// '-'.
func dottedLabels(s string, inLabel func(byte) bool) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if i == start || s[start] == '-' || s[i-1] == '-' {
				return false
			}
			start = i + 1
			continue
		}
		if !inLabel(s[i]) {
			return false
		}
	}
	return true
}

func isDNSChar(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHostChar(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// isLabelName is `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$` (a label's
// name or value).
func isLabelName(s string) bool {
	n := len(s)
	if n == 0 || !isAlnum(s[0]) || !isAlnum(s[n-1]) {
		return false
	}
	for i := 1; i < n-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// isTagKey is `^[a-zA-Z0-9.\-_:/]+$`.
func isTagKey(s string) bool { return len(s) > 0 && allTagChars(s, true) }

// isTagValue is `^[a-zA-Z0-9.\-_:]+$`.
func isTagValue(s string) bool { return len(s) > 0 && allTagChars(s, false) }

func allTagChars(s string, slash bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '-' && c != '_' && c != ':' && (!slash || c != '/') {
			return false
		}
	}
	return true
}
