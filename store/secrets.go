package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Token secrets are derived, not stored: secret = HMAC(node key, name and
// nonce). The store keeps only each secret's SHA-256, so a copy of the
// database gives no secret away, while root, who can read the key file,
// can always show a token's secret again.

// secretPrefix marks a moreh token secret, as "ghp_" marks GitHub's.
const secretPrefix = "mrh_"

// LoadKey reads the node key at path, creating a random one (0600) if missing.
func LoadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < 32 {
			return nil, fmt.Errorf("the token key %s is shorter than 32 bytes: move it aside to make a new one (existing tokens' secrets change)", path)
		}
		return key, nil
	}
	if !os.IsNotExist(err) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

func deriveSecret(key []byte, name string, nonce []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(name))
	mac.Write([]byte{0})
	mac.Write(nonce)
	return secretPrefix + hex.EncodeToString(mac.Sum(nil)[:20])
}

func hashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// sameHash compares two hashes in constant time.
func sameHash(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}
