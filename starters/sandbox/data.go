package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Contact is one CRM contact, exactly as the API serves it (see Defect for
// the one violation that a struct cannot carry).
type Contact struct {
	ID        int64   `json:"id"`
	UUID      string  `json:"uuid"`
	FirstName string  `json:"first_name"`
	LastName  string  `json:"last_name"`
	Email     string  `json:"email"`
	Phone     string  `json:"phone"`
	CompanyID int64   `json:"company_id"`
	Status    string  `json:"status"`
	Score     int     `json:"score"`
	OptIn     bool    `json:"opt_in"`
	OptInAt   *string `json:"opt_in_at,omitempty"`
	Website   string  `json:"website,omitempty"`
	Address   Address `json:"address"`
	// Tags is never nil: an untagged contact is served with "tags": [].
	Tags      []string `json:"tags"`
	CreatedAt string   `json:"created_at"`
	UpdatedAt string   `json:"updated_at"`
	// Defect names the schema violation the contact is served with, or
	// DefectNone. Fields reflect the violation (an invalid Email, Score 150,
	// Status "prospect", OptInAt nil, Email "" when it is left out), except
	// for DefectScoreType (served as "score":"high", Score keeps the number)
	// and DefectMissingID (served without "id", ID keeps the number).
	Defect Defect `json:"-"`
}

// Address is a contact's postal address.
type Address struct {
	Street  string `json:"street"`
	City    string `json:"city"`
	Country string `json:"country"` // ISO 3166-1 alpha-2
}

// Company is one CRM company as the API serves it.
type Company struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Domain      string `json:"domain"`
	Industry    string `json:"industry"`
	Employees   int    `json:"employees"`
	FoundedYear int    `json:"founded_year"`
	Country     string `json:"country"`
	Website     string `json:"website"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
}

// Defect is the kind of JSON-schema violation a schema-invalid contact is
// served with.
type Defect string

// The defects, one per invalid contact, chosen by seed and id.
const (
	DefectNone           Defect = ""
	DefectInvalidEmail   Defect = "invalid_email"      // email without an @
	DefectMissingEmail   Defect = "missing_email"      // required "email" key absent
	DefectScoreType      Defect = "score_wrong_type"   // "score": "high"
	DefectScoreRange     Defect = "score_out_of_range" // "score": 150
	DefectStatusEnum     Defect = "bad_status"         // "status": "prospect"
	DefectOptInWithoutAt Defect = "opt_in_without_at"  // opt_in true, no opt_in_at
	DefectMissingID      Defect = "missing_id"         // "id" key absent
)

const (
	timestampLayout           = "2006-01-02T15:04:05.000Z" // RFC 3339, UTC, milliseconds
	statusLead                = "lead"
	statusCustomer            = "customer"
	statusChurned             = "churned"
	invalidStatus             = "prospect"
	invalidScore              = 150
	dataEpochUnixMilli        = 1748736000000 // 2025-06-01T00:00:00Z: generated data ends here
	dataSpanMilli             = 3 * 365 * 24 * 3600 * 1000
	streamCompany      uint64 = 0xc0 // RNG streams, one per use of the seed
	streamContact      uint64 = 0xc1
	streamTouch        uint64 = 0x70
	streamFaults       uint64 = 0xfa
	streamInvalid      uint64 = 0x1d
)

// defects lists the violations in the order they are assigned.
func defects() []Defect {
	return []Defect{DefectInvalidEmail, DefectMissingEmail, DefectScoreType, DefectScoreRange,
		DefectStatusEnum, DefectOptInWithoutAt, DefectMissingID}
}

// Industries lists the company industry enum.
func Industries() []string {
	return []string{"software", "finance", "healthcare", "retail", "manufacturing", "education"}
}

// ContactStatuses lists the contact status enum.
func ContactStatuses() []string { return []string{statusLead, statusCustomer, statusChurned} }

// Word lists, as constants so that no package variable can be mutated;
// newVocab splits them once per Server.
const (
	firstNameList = "James,Mary,John,Patricia,Robert,Jennifer,Michael,Linda,William,Elizabeth,David," +
		"Barbara,Richard,Susan,Joseph,Jessica,Thomas,Sarah,Charles,Karen,Amélie,Lukas,Sofia,Mateo,Yuki," +
		"Aisha,Chen,Olga,Pedro,Ingrid,Noah,Emma,Liam,Olivia,Ava,Lucas,Mia,Hugo,Zoe,Ravi,Priya,Kwame,Fatima,Sven,Ana"
	lastNameList = "Smith,Johnson,Williams,Brown,Jones,Garcia,Miller,Davis,Rodriguez,Martinez,Hernandez," +
		"Lopez,Wilson,Anderson,Thomas,Taylor,Moore,Jackson,Martin,Lee,Müller,Schmidt,Dubois,Rossi,Tanaka," +
		"Nakamura,Kowalski,Novak,Silva,Santos,O'Brien,Nguyen,Kim,Patel,Singh,Okafor,Larsen,Berg,Costa,van Dijk"
	syllableList      = "ac,me,glo,bex,ini,tech,vo,lar,zen,tri,co,nex,ora,dyn,qua,sol,ver,ta,pix,mon,ax,el,ri,um"
	companySuffixList = "Labs,Systems,Group,Inc,Partners,Holdings,Solutions,Works"
	tldList           = "com,io,net,co,de,fr,org"
	freeMailList      = "gmail.com,outlook.com,yahoo.com,proton.me,icloud.com"
	streetList        = "Main,Oak,Pine,Maple,Cedar,Elm,Lake,Hill,Park,Station"
	streetKindList    = "St,Ave,Road,Blvd,Lane"
	tagList           = "vip,newsletter,trial,enterprise,partner,webinar,event-2024,beta"
	placeList         = "US:New York,US:San Francisco,US:Austin,GB:London,GB:Manchester,DE:Berlin,DE:Munich," +
		"FR:Paris,FR:Lyon,ES:Madrid,IT:Milan,NL:Amsterdam,SE:Stockholm,JP:Tokyo,BR:São Paulo,IN:Bangalore," +
		"CA:Toronto,AU:Sydney,NG:Lagos,PL:Warsaw"
)

// place is a city and its ISO 3166-1 alpha-2 country code.
type place struct{ country, city string }

// vocab holds the word lists the generators draw from.
type vocab struct {
	firstNames, lastNames, syllables, companySuffixes []string
	tlds, freeMail, streets, streetKinds, tags        []string
	industries                                        []string
	places                                            []place
}

func newVocab() *vocab {
	split := func(s string) []string { return strings.Split(s, ",") }
	v := &vocab{
		firstNames: split(firstNameList), lastNames: split(lastNameList), syllables: split(syllableList),
		companySuffixes: split(companySuffixList), tlds: split(tldList), freeMail: split(freeMailList),
		streets: split(streetList), streetKinds: split(streetKindList), tags: split(tagList),
		industries: Industries(),
	}
	for _, p := range split(placeList) {
		code, city, _ := strings.Cut(p, ":")
		v.places = append(v.places, place{country: code, city: city})
	}
	return v
}

// mix is splitmix64: a cheap, well-distributed hash of one word.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// rngFor is the deterministic RNG of one (seed, stream, n) triple.
func rngFor(seed, stream, n uint64) *rand.Rand {
	return rand.New(rand.NewPCG(mix(seed^stream<<56), mix(n^stream)))
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func formatMilli(ms int64) string { return time.UnixMilli(ms).UTC().Format(timestampLayout) }

func uuid4(r *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return string(out)
}

// asciiLower turns a name into an email local part: letters only, lower case.
func asciiLower(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
		case r == 'é' || r == 'è':
			b.WriteByte('e')
		case r == 'ü':
			b.WriteByte('u')
		case r == 'ã':
			b.WriteByte('a')
		}
	}
	return b.String()
}

// companyName makes a pronounceable name from the RNG.
func (v *vocab) companyName(r *rand.Rand) string {
	n := 2 + r.IntN(2)
	var b strings.Builder
	for range n {
		b.WriteString(pick(r, v.syllables))
	}
	word := b.String()
	return strings.ToUpper(word[:1]) + word[1:] + " " + pick(r, v.companySuffixes)
}

// newCompany generates company id with the given timestamps (milliseconds).
func (v *vocab) newCompany(seed uint64, id int64, createdMs, updatedMs int64) Company {
	r := rngFor(seed, streamCompany, uint64(id))
	name := v.companyName(r)
	domain := asciiLower(strings.Fields(name)[0]) + strconv.FormatInt(id, 10) + "." + pick(r, v.tlds)
	c := pick(r, v.places)
	// Head counts spread over orders of magnitude: 1 to ~60,000.
	employees := int(1 + r.ExpFloat64()*float64([]int{8, 80, 800, 8000}[r.IntN(4)]))
	return Company{
		ID:          id,
		Name:        name,
		Domain:      domain,
		Industry:    pick(r, v.industries),
		Employees:   min(employees, 250000),
		FoundedYear: 1950 + r.IntN(75),
		Country:     c.country,
		Website:     "https://www." + domain,
		CreatedAt:   formatMilli(createdMs),
		UpdatedAt:   formatMilli(updatedMs),
	}
}

// newContact generates contact id with the given timestamps (milliseconds);
// companies is the number of companies to attach it to.
func (v *vocab) newContact(seed uint64, id int64, companies int, createdMs, updatedMs int64) Contact {
	r := rngFor(seed, streamContact, uint64(id))
	first, last := pick(r, v.firstNames), pick(r, v.lastNames)
	local := asciiLower(first) + "." + asciiLower(last)
	if r.IntN(3) == 0 {
		local += strconv.Itoa(r.IntN(1000))
	}
	domain := pick(r, v.freeMail)
	if r.IntN(2) == 0 {
		domain = asciiLower(pick(r, v.syllables)+pick(r, v.syllables)) + "." + pick(r, v.tlds)
	}
	email := local + "@" + domain
	// About 10% need normalising downstream: mixed case or padding.
	switch r.IntN(30) {
	case 0:
		email = strings.ToUpper(email[:1]) + email[1:strings.IndexByte(email, '@')+1] + strings.ToUpper(domain[:1]) + domain[1:]
	case 1:
		email = strings.ToUpper(email)
	case 2:
		email = "  " + email + " "
	}
	status := statusLead
	switch x := r.IntN(100); {
	case x >= 85:
		status = statusChurned
	case x >= 50:
		status = statusCustomer
	}
	c := Contact{
		ID:        id,
		UUID:      uuid4(r),
		FirstName: first,
		LastName:  last,
		Email:     email,
		Phone:     fmt.Sprintf("+1-%03d-555-%04d", 200+r.IntN(800), r.IntN(10000)),
		CompanyID: 1 + int64(r.IntN(max(companies, 1))),
		Status:    status,
		Score:     r.IntN(101),
		OptIn:     r.IntN(10) < 6,
		CreatedAt: formatMilli(createdMs),
		UpdatedAt: formatMilli(updatedMs),
	}
	if c.OptIn {
		at := formatMilli(createdMs + r.Int64N(updatedMs-createdMs+1))
		c.OptInAt = &at
	}
	if r.IntN(10) < 3 {
		c.Website = "https://www." + asciiLower(last) + strconv.Itoa(r.IntN(100)) + ".com/"
	}
	pl := pick(r, v.places)
	c.Address = Address{
		Street:  fmt.Sprintf("%d %s %s", 1+r.IntN(999), pick(r, v.streets), pick(r, v.streetKinds)),
		City:    pl.city,
		Country: pl.country,
	}
	c.Tags = []string{}
	for _, i := range r.Perm(len(v.tags))[:r.IntN(4)] {
		c.Tags = append(c.Tags, v.tags[i])
	}
	return c
}

// timeline generates n (created, updated) millisecond pairs for ids 1..n:
// created grows with id; about 1 in 5 records shares its updated_at with a
// neighbour and about 1 in 100 was touched by one bulk update, so paging by
// (updated_at, id) must break ties by id.
func timeline(seed, stream uint64, n int) (created, updated []int64) {
	r := rngFor(seed, stream, 0)
	created, updated = make([]int64, n), make([]int64, n)
	start := int64(dataEpochUnixMilli - dataSpanMilli)
	step := int64(dataSpanMilli) / int64(max(n, 1))
	for i := range n {
		created[i] = start + int64(i)*step + r.Int64N(max(step, 1))
		updated[i] = created[i]
		if r.IntN(10) < 7 {
			updated[i] += r.Int64N(dataEpochUnixMilli - created[i])
		}
	}
	for i := 1; i < n; i++ {
		if r.IntN(5) != 0 {
			continue
		}
		if updated[i-1] >= created[i] {
			updated[i] = updated[i-1]
		} else {
			updated[i-1] = updated[i]
		}
	}
	bulk := int64(dataEpochUnixMilli) - r.Int64N(30*24*3600*1000)
	for i := range n {
		if r.IntN(100) == 0 && created[i] <= bulk {
			updated[i] = bulk
		}
	}
	return created, updated
}

// served applies c's defect to the struct view of it.
func served(c Contact, d Defect) Contact {
	c.Defect = d
	switch d {
	case DefectInvalidEmail:
		c.Email = strings.Replace(strings.TrimSpace(c.Email), "@", "_at_", 1)
	case DefectMissingEmail:
		c.Email = ""
	case DefectScoreRange:
		c.Score = invalidScore
	case DefectStatusEnum:
		c.Status = invalidStatus
	case DefectOptInWithoutAt:
		c.OptIn, c.OptInAt = true, nil
	}
	return c
}

// encodeContact renders c (already through served) as the API serves it.
func encodeContact(c Contact) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode contact %d: %w", c.ID, err)
	}
	// Keys are unique and string values have their quotes escaped, so
	// these byte edits touch exactly the member they name.
	switch c.Defect {
	case DefectMissingEmail:
		b = bytes.Replace(b, []byte(`"email":"",`), nil, 1)
	case DefectScoreType:
		b = bytes.Replace(b, []byte(`"score":`+strconv.Itoa(c.Score)+`,`), []byte(`"score":"high",`), 1)
	case DefectMissingID:
		b = bytes.Replace(b, []byte(`"id":`+strconv.FormatInt(c.ID, 10)+`,`), nil, 1)
	}
	return b, nil
}

func encodeCompany(c Company) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode company %d: %w", c.ID, err)
	}
	return b, nil
}

func parseMilli(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(fmt.Sprintf("sandbox: generated timestamp %q: %v", s, err)) // generated by formatMilli
	}
	return t.UnixMilli()
}
