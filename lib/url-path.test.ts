import assert from 'node:assert/strict';
import { hasPathPrefix, normalizePath, prefixOf } from './url-path.js';

describe('request paths as rules match them (lib/url-path.ts)', () => {
  it('leaves plain paths as they are', () => {
    for (const p of ['/', '/a', '/a/b/', '/.well-known/x', '/a..b/c.', '/~user']) assert.equal(normalizePath(p), p);
  });

  it('drops the query, the fragment and an absolute-form target\'s scheme and authority', () => {
    assert.equal(normalizePath('/orders?id=1#x'), '/orders');
    assert.equal(normalizePath('/orders#x?y'), '/orders');
    assert.equal(normalizePath('http://api.shop:8080/orders?x'), '/orders');
    assert.equal(normalizePath('http://api.shop'), '/');
    assert.equal(normalizePath(''), '/');
    assert.equal(normalizePath('*'), '*');
  });

  it('gives one spelling to the ways of writing /admin', () => {
    for (const p of ['/public/../admin', '//admin', '/./admin', '/%61dmin', '/%2e%2e/admin', '/x/%2E%2E/admin', '/admin/.', '\\admin', '/%2Fadmin', '/%5cadmin']) {
      assert.match(normalizePath(p), /^\/admin\/?$/, p);
    }
    assert.equal(normalizePath('/admin%2fusers'), '/admin/users');
    assert.equal(normalizePath('/a/b/..'), '/a/');
    assert.equal(normalizePath('/../../'), '/');
  });

  it('keeps other escapes, upper-cased, and decodes only once', () => {
    assert.equal(normalizePath('/a%20b%3f'), '/a%20b%3F');
    assert.equal(normalizePath('/%252Fadmin'), '/%252Fadmin');
    assert.equal(normalizePath('/%zz'), '/%zz');
  });

  it('matches prefixes on whole segments', () => {
    assert.ok(hasPathPrefix('/api', prefixOf('/api')));
    assert.ok(hasPathPrefix('/api/v1', prefixOf('/api/')));
    assert.ok(!hasPathPrefix('/apis', prefixOf('/api')));
    assert.ok(hasPathPrefix('/anything', prefixOf('/')));
  });
});
