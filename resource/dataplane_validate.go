package resource

// SetDefaults makes a gateway DELEGATED unless told otherwise and gives every
// inbound a servicePort equal to its port when none is set.
func (s *DataplaneSpec) SetDefaults() {
	n := &s.Networking
	if n.Gateway != nil && n.Gateway.Type == "" {
		n.Gateway.Type = GatewayDelegated
	}
	for i := range n.Inbound {
		if n.Inbound[i].ServicePort == 0 {
			n.Inbound[i].ServicePort = n.Inbound[i].Port
		}
	}
}

// Validate checks the proxy's addresses, ports and service tags.
func (s *DataplaneSpec) Validate() ValidationErrors {
	var errs ValidationErrors
	n := &s.Networking
	const path = "networking"
	switch {
	case n.Address == "":
		errs.Add(joinField(path, "address"), msgMustBeDefined)
	case !isIPOrHostname(n.Address):
		errs.Add(joinField(path, "address"), "must be a valid IP address or hostname")
	}
	if n.AdvertisedAddress != "" && !isIPOrHostname(n.AdvertisedAddress) {
		errs.Add(joinField(path, "advertisedAddress"), "must be a valid IP address or hostname")
	}
	switch {
	case len(n.Inbound) == 0 && n.Gateway == nil:
		errs.Add(path, "must have at least one inbound or a gateway")
	case len(n.Inbound) > 0 && n.Gateway != nil:
		errs.Add(joinField(path, "inbound"), "must not be defined together with a gateway")
	}
	for i, in := range n.Inbound {
		p := joinIndex(joinField(path, "inbound"), i)
		if !validPort(in.Port) {
			errs.Add(joinField(p, "port"), msgPortRange)
		}
		if in.ServicePort != 0 && !validPort(in.ServicePort) {
			errs.Add(joinField(p, "servicePort"), msgPortRange)
		}
		if in.Address != "" && !isIPOrHostname(in.Address) {
			errs.Add(joinField(p, "address"), "must be a valid IP address or hostname")
		}
		if in.ServiceAddress != "" && !isIPOrHostname(in.ServiceAddress) {
			errs.Add(joinField(p, "serviceAddress"), "must be a valid IP address or hostname")
		}
		validateServiceTags(&errs, joinField(p, "tags"), in.Tags)
	}
	if g := n.Gateway; g != nil {
		p := joinField(path, "gateway")
		switch g.Type {
		case "", GatewayBuiltin, GatewayDelegated:
		default:
			errs.Add(joinField(p, "type"), "must be one of BUILTIN, DELEGATED")
		}
		validateServiceTags(&errs, joinField(p, "tags"), g.Tags)
	}
	for i, out := range n.Outbound {
		p := joinIndex(joinField(path, "outbound"), i)
		if !validPort(out.Port) {
			errs.Add(joinField(p, "port"), msgPortRange)
		}
		if out.Address != "" && !isIPOrHostname(out.Address) {
			errs.Add(joinField(p, "address"), "must be a valid IP address or hostname")
		}
		validateServiceTags(&errs, joinField(p, "tags"), out.Tags)
	}
	if a := n.Admin; a != nil && !validPort(a.Port) {
		errs.Add(joinField(joinField(path, "admin"), "port"), msgPortRange)
	}
	return errs
}

// validateServiceTags requires a non-empty kuma.io/service tag and checks the
// charset of every tag.
func validateServiceTags(errs *ValidationErrors, path string, tags map[string]string) {
	if _, ok := tags[TagService]; !ok {
		errs.Add(joinKey(path, TagService), "tag has to exist")
	}
	validateTags(errs, path, tags)
}
