'use strict';
// s3rver behind a proxy that checks SigV4 signatures, payload hashes and Content-MD5 as S3
// does. Usage: node verifying-s3rver.js DATA_DIR [PORT]. Prints "listening PORT".
const crypto = require('crypto');
const http = require('http');
const S3rver = require('s3rver');

const secrets = { S3RVER: 'S3RVER' };
const region = 'us-east-1';

const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = data => crypto.createHash('sha256').update(data).digest('hex');
const md5 = data => crypto.createHash('md5').update(data).digest('base64');
// RFC 3986: encodeURIComponent leaves !'()* alone, SigV4 does not.
const encode = s =>
  encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// [status, code, message] of the refusal, or null.
function verify(req, body) {
  const auth = req.headers['authorization'];
  if (!auth) return [403, 'AccessDenied', 'Anonymous access is refused'];
  const m = new RegExp('^AWS4-HMAC-SHA256 Credential=([^/]+)/(\\d{8})/([^/]+)/s3/aws4_request, ?' +
                       'SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$').exec(auth);
  if (!m) return [400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed'];
  const [, accessKey, day, scopeRegion, signedHeaders, signature] = m;
  const secret = secrets[accessKey];
  if (secret === undefined) {
    return [403, 'InvalidAccessKeyId',
            'The AWS Access Key Id you provided does not exist in our records.'];
  }
  if (scopeRegion !== region) {
    return [400, 'AuthorizationHeaderMalformed', `the region ${scopeRegion} is wrong`];
  }
  const date = req.headers['x-amz-date'];
  if (!/^\d{8}T\d{6}Z$/.test(date || '') || !date.startsWith(day)) {
    return [403, 'AccessDenied', `x-amz-date "${date}" does not match the credential scope`];
  }
  const signed = signedHeaders.split(';');
  if (!signed.includes('host')) return [403, 'AccessDenied', 'host is not signed'];
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith('x-amz-') && !signed.includes(name)) {
      return [403, 'AccessDenied', `${name} is not signed`];
    }
  }
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== sha256(body)) {
    return [400, 'XAmzContentSHA256Mismatch',
            "The provided 'x-amz-content-sha256' header does not match what was computed."];
  }
  if ('content-md5' in req.headers && req.headers['content-md5'] !== md5(body)) {
    return [400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.'];
  }
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? '' : req.url.slice(q + 1);
  const canonicalUri = path.split('/').map(s => encode(decodeURIComponent(s))).join('/');
  const canonicalQuery = query.split('&').filter(p => p)
    .map(p => {
      const i = p.indexOf('=');
      return i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
    })
    .map(([k, v]) => [encode(decodeURIComponent(k)), encode(decodeURIComponent(v))])
    .sort((a, b) => compare(a[0], b[0]) || compare(a[1], b[1]))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const canonicalHeaders = signed
    .map(h => `${h}:${String(req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalRequest = [req.method, canonicalUri, canonicalQuery, canonicalHeaders,
                            signedHeaders, payloadHash].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', date, `${day}/${region}/s3/aws4_request`,
                        sha256(canonicalRequest)].join('\n');
  let key = hmac('AWS4' + secret, day);
  for (const part of [region, 's3', 'aws4_request']) key = hmac(key, part);
  if (hmac(key, stringToSign).toString('hex') !== signature) {
    return [403, 'SignatureDoesNotMatch',
            'The request signature we calculated does not match the signature you provided. ' +
            'Check your key and signing method.'];
  }
  return null;
}

function refuse(res, [status, code, message]) {
  const escape = s => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escape(message)}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml',
                          'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory: process.argv[2] });
s3rver.run().then(({ port: s3rverPort }) => {
  const proxy = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', chunk => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const refusal = verify(req, body);
      if (refusal) {
        console.log(`refused ${req.method} ${req.url}: ${refusal[1]}`);
        return refuse(res, refusal);
      }
      const headers = { ...req.headers };
      delete headers['expect'];
      const upstream = http.request(
        { host: '127.0.0.1', port: s3rverPort, method: req.method, path: req.url, headers },
        answer => { res.writeHead(answer.statusCode, answer.headers); answer.pipe(res); });
      upstream.on('error', err => refuse(res, [502, 'BadGateway', err.message]));
      upstream.end(body);
    });
  });
  proxy.listen(Number(process.argv[3] || 0), '127.0.0.1',
               () => console.log(`listening ${proxy.address().port}`));
}, err => { console.error(err); process.exit(1); });
