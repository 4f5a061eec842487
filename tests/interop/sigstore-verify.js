// Verify a Sigstore v0.3 bundle offline with a public key, using sigstore-js (@sigstore/verify):
// an outside verifier for the signatures oemkit writes. Usage: node sigstore-verify.js BUNDLE.json KEY.pub
const {Verifier, toSignedEntity, toTrustMaterial} = require('@sigstore/verify');
const {bundleFromJSON} = require('@sigstore/bundle');
const crypto = require('crypto');
const fs = require('fs');
const [,, bundlePath, pubPath] = process.argv;
const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
const key = crypto.createPublicKey(fs.readFileSync(pubPath));
const root = {mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: []};
const tm = toTrustMaterial(root, (hint) => ({publicKey: key, validFor: () => true}));
const v = new Verifier(tm, {tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0});
try { v.verify(toSignedEntity(bundle)); console.log('VERIFIED'); }
catch (e) { console.log('FAILED ' + e.code + ' ' + e.message); process.exit(1); }
