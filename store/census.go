package store

import "context"

// Census is what metrics shows of many tokens, from one snapshot and kept
// small (a few dozen bytes a device), so that a reader can be served from
// it for as long as it reads, however large the store.
type Census struct {
	Tokens  []CensusToken  // by name
	Devices []CensusDevice // each token's in turn (Tokens[i].Devices of them), by id
	Jobs    map[uint64]Job // the devices' running jobs, by job id
	Pool    []PoolEntry    // with pool only; by node and index
}

// CensusToken is one token's figures.
type CensusToken struct {
	Name       string
	MaxDevices int
	UnitMillis uint64
	Devices    int // how many of Census.Devices are its
}

// CensusDevice is one device's figures.
type CensusDevice struct {
	ID    uint64
	Job   uint64 // 0 when none runs
	model *Model // the catalogue's entry: nothing kept per device
}

// Model is the device's model.
func (d CensusDevice) Model() Model { return *d.model }

// catalogueModel is the catalogue's entry of a stored model name; a name
// this build does not know is shown as it is.
func catalogueModel(name string) *Model {
	for i := range models {
		if models[i].Name == name { // stored names are canonical
			return &models[i]
		}
	}
	return &Model{Name: name}
}

// censusRecord is the part of a device's record a census keeps: decoding
// only it skips the times, a walk's most costly fields.
type censusRecord struct {
	ID    uint64 `json:"id"`
	Token string `json:"token"`
	Model string `json:"model"`
	Job   uint64 `json:"job"`
}

// Census reads, in one transaction, the tokens uid may see (every one for
// root, else its own) with their devices and running jobs, and with pool
// the pool's GPUs.
func (r *Registry) Census(ctx context.Context, uid int, pool bool) (Census, error) {
	var own string
	if uid != 0 {
		var err error
		if own, err = r.CallerToken(ctx, uid); err != nil {
			return Census{}, err
		}
	}
	var c Census
	err := r.eng.View(ctx, func(tx Tx) error {
		c = Census{Jobs: map[uint64]Job{}}
		if own != "" {
			t, err := loadToken(tx, own)
			if err != nil {
				return err
			}
			if err := c.addToken(tx, t); err != nil {
				return err
			}
		} else if err := c.addAll(tx); err != nil {
			return err
		}
		if !pool {
			return nil
		}
		var err error
		c.Pool, err = loadPool(tx)
		return err
	})
	return c, ioError(err)
}

// addAll adds every token and every device: one walk of each bucket,
// whatever their size (one range read each on etcd), then the devices put
// in their tokens' order in place.
func (c *Census) addAll(tx Tx) error {
	place := map[string]int32{} // a token's place in Tokens
	err := tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
		var t struct {
			Name       string `json:"name"`
			MaxDevices int    `json:"max_devices"`
			UnitMillis uint64 `json:"unit_millis"`
		}
		if err := unmarshalJSON(bucketTokens, k, v, &t); err != nil {
			return err
		}
		place[t.Name] = int32(len(c.Tokens))
		c.Tokens = append(c.Tokens, CensusToken{Name: t.Name, MaxDevices: t.MaxDevices, UnitMillis: t.UnitMillis})
		return nil
	})
	if err != nil {
		return err
	}
	var owner []int32 // each device's token, by id
	err = tx.ForEachPrefix(bucketDevices, nil, func(k, v []byte) error {
		var d censusRecord
		if err := unmarshalJSON(bucketDevices, k, v, &d); err != nil {
			return err
		}
		i, ok := place[d.Token]
		if !ok {
			return errorf(KindIO, "Device %d belongs to token %s, which the store does not hold.", d.ID, quoteInput(d.Token))
		}
		c.Devices = append(c.Devices, CensusDevice{ID: d.ID, Job: d.Job, model: catalogueModel(d.Model)})
		owner = append(owner, i)
		c.Tokens[i].Devices++
		if d.Job == 0 {
			return nil
		}
		j, err := loadJob(tx, d.Job)
		c.Jobs[j.ID] = j
		return err
	})
	if err != nil {
		return err
	}
	// Each device's place: after the devices of the tokens before its own,
	// in id order among its token's (a counting sort).
	next := make([]int32, len(c.Tokens))
	for i, sum := 1, int32(0); i < len(next); i++ {
		sum += int32(c.Tokens[i-1].Devices)
		next[i] = sum
	}
	to := owner // reused: owner[i] becomes device i's place
	for i, t := range owner {
		to[i], next[t] = next[t], next[t]+1
	}
	for i := range c.Devices { // the permutation, cycle by cycle, in place
		for to[i] != int32(i) {
			j := to[i]
			c.Devices[i], c.Devices[j] = c.Devices[j], c.Devices[i]
			to[i], to[j] = to[j], to[i]
		}
	}
	return nil
}

// addToken appends t and its devices, by id as the index keeps them.
func (c *Census) addToken(tx Tx, t Token) error {
	ct := CensusToken{Name: t.Name, MaxDevices: t.MaxDevices, UnitMillis: t.UnitMillis}
	prefix := tokenDevicePrefix(t.Name)
	err := tx.ForEachPrefix(bucketTokenDevices, prefix, func(k, _ []byte) error {
		id := fromU64(k[len(prefix):])
		var d censusRecord
		found, err := getJSON(tx, bucketDevices, u64(id), &d)
		switch {
		case err != nil:
			return err
		case !found || d.Token != t.Name:
			return errorf(KindIO, "The index names device %d of token %s, which the store does not hold.", id, quoteInput(t.Name))
		}
		c.Devices = append(c.Devices, CensusDevice{ID: d.ID, Job: d.Job, model: catalogueModel(d.Model)})
		ct.Devices++
		if d.Job == 0 {
			return nil
		}
		j, err := loadJob(tx, d.Job)
		c.Jobs[j.ID] = j
		return err
	})
	c.Tokens = append(c.Tokens, ct)
	return err
}

// TokenNumbers maps every token's name to its number, decoding no more of
// the records: the tree's memory of them while the store fails.
func (r *Registry) TokenNumbers(ctx context.Context) (map[string]uint64, error) {
	var numbers map[string]uint64
	err := r.eng.View(ctx, func(tx Tx) error {
		numbers = map[string]uint64{}
		return tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
			var t struct {
				Number uint64 `json:"number"`
			}
			err := unmarshalJSON(bucketTokens, k, v, &t)
			numbers[string(k)] = t.Number
			return err
		})
	})
	return numbers, ioError(err)
}
