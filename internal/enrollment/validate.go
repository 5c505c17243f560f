package enrollment

import (
	"regexp"
	"unicode"
)

var (
	resourceIDPattern  = regexp.MustCompile(`^[a-z][a-z0-9-]{2,62}$`)
	externalRefPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// ValidateResourceID checks a user-chosen id (incident, cohort, partner).
func ValidateResourceID(field, id string) error {
	if !resourceIDPattern.MatchString(id) {
		return Invalidf("%s must be 3-63 characters of lower case letters, digits and hyphens, starting with a letter", field)
	}
	return nil
}

// ValidateExternalRef checks a subject's external reference.
func ValidateExternalRef(ref string) error {
	if !externalRefPattern.MatchString(ref) {
		return Invalidf("external_ref must be 1-64 characters of letters, digits, '.', '_' or '-'")
	}
	return nil
}

// ValidateMemberID checks a partner member id: 1-128 printable characters.
func ValidateMemberID(id string) error {
	if id == "" || len(id) > 128 {
		return Invalidf("member_id must be 1-128 characters")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return Invalidf("member_id must contain printable characters only")
		}
	}
	return nil
}
