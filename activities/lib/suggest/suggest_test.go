package suggest

import "testing"

func TestClosest(t *testing.T) {
	known := []string{"email", "updated_at", "ids", "id"}
	tests := []struct{ give, want string }{
		{give: "emial", want: "email"},  // transposition
		{give: "e_mail", want: "email"}, // insertion
		{give: "Email", want: "email"},  // case ignored in the name
		{give: "update_at", want: "updated_at"},
		{give: "idz", want: "ids"},
		{give: "phone", want: ""}, // nothing near enough
		{give: "x", want: ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.give, known); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
	if got := Closest("email", nil); got != "" {
		t.Errorf("Closest with nothing known = %q, want \"\"", got)
	}
}
