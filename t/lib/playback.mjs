// playback.mjs: load a player page in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser download) and
// report what the video did, as one JSON object on stdout.
//
//   node t/lib/playback.mjs --url URL [--min-time 3] [--timeout 40]
//        [--screenshot PATH] [--wrong-key HEX32] [--video-only]
//
// It polls window.playerState (web/player.js) and the <video> element until
// currentTime >= --min-time, or the page reports an error, or --timeout
// seconds pass. With --wrong-key every licence request (/license/<M>, or
// /packaged/<M>/s/<signature>/license) is answered by the browser itself (page.route) with that key:
// a POST (W3C ClearKey licence, DASH) for the key ids asked for, a GET (the
// HLS KEYFORMAT="identity" key URI) as the 16 raw bytes; so the content is
// "decrypted" with the wrong key. With --video-only the browser drops the
// audio from every manifest it fetches (page.route): the audio
// AdaptationSets of an MPD, the audio EXT-X-MEDIA renditions (and AUDIO=,
// mp4a CODECS) of an HLS master playlist; so that a wrong key has to be
// caught by the video decoder. The screenshot is taken at the end, whatever
// happened.
//
// Output: {"ok":bool, "reason":"...", "time":s, "state":{...},
//          "video":{...}, "license":[{method,status,url,kids}],
//          "manifests":[{status,path}], "requests":["METHOD path?query"]
//          (of /packaged/ and /license/), "failed":[...], "console":[...],
//          "frame":{mean,stddev,motion}, "audioRemoved":bool}
// Exit status: 0 when the result was printed (the caller judges it), 2 when
// the browser could not be driven at all.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'package.json'));
const { chromium } = require('playwright-core');

function args(argv) {
    const o = { minTime: 3, timeout: 40 };
    for (let i = 2; i < argv.length; i++) {
        const a = argv[i], v = () => argv[++i];
        if (a === '--url') o.url = v();
        else if (a === '--min-time') o.minTime = Number(v());
        else if (a === '--timeout') o.timeout = Number(v());
        else if (a === '--screenshot') o.screenshot = v();
        else if (a === '--wrong-key') o.wrongKey = v();
        else if (a === '--video-only') o.videoOnly = true;
        else throw new Error(`unknown argument ${a}`);
    }
    if (!o.url) throw new Error('--url is required');
    if (o.wrongKey && !/^[0-9a-fA-F]{32}$/.test(o.wrongKey))
        throw new Error('--wrong-key wants 32 hex digits');
    return o;
}

const b64url = (buf) => Buffer.from(buf).toString('base64')
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// a licence URL: /license/<M> or, signed in the path, /packaged/<M>/s/../license
const isLicense = (u) => /\/license(\/|$)/.test(u.pathname);

// luma (160x90) of a screenshot of the page's <video> element
async function frameLuma(page) {
    const el = await page.$('video');
    if (!el) return null;
    const png = await el.screenshot({ timeout: 5000 });
    return page.evaluate(async (b64) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = 160; c.height = 90;
        const g = c.getContext('2d', { willReadFrequently: true });
        g.drawImage(img, 0, 0, c.width, c.height);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const luma = [];
        let s = 0, s2 = 0;
        for (let i = 0; i < d.length; i += 4) {
            const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
            luma.push(Math.round(y)); s += y; s2 += y * y;
        }
        const mean = s / luma.length;
        return { luma, mean, stddev: Math.sqrt(Math.max(0, s2 / luma.length - mean * mean)) };
    }, png.toString('base64'));
}

async function main() {
    const o = args(process.argv);
    const out = { ok: false, reason: '', time: 0, state: null, video: null,
                  license: [], manifests: [], requests: [], failed: [], console: [],
                  frame: null };
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu',
               '--disable-background-networking', '--disable-quic',
               '--disable-component-update', '--disable-sync',
               '--no-first-run', '--mute-audio',
               '--autoplay-policy=no-user-gesture-required'],
    });
    try {
        const ctx = await browser.newContext({ viewport: { width: 1000, height: 720 } });
        const page = await ctx.newPage();
        page.on('console', (m) => {
            if (out.console.length < 50) out.console.push(`${m.type()}: ${m.text()}`);
        });
        page.on('pageerror', (e) => out.console.push(`pageerror: ${e.message}`));
        page.on('requestfailed', (r) =>
            out.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
        page.on('response', (r) => {
            const u = new URL(r.url());
            if (r.status() >= 400) out.failed.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
            if (isLicense(u) && !o.wrongKey)
                out.license.push({ method: r.request().method(),
                                   status: r.status(), url: r.url() });
            if (/\.(mpd|m3u8)$/.test(u.pathname))
                out.manifests.push({ status: r.status(), path: u.pathname });
            if (/^\/(packaged|license)\//.test(u.pathname) && out.requests.length < 500)
                out.requests.push(`${r.request().method()} ${u.pathname}${u.search}`);
        });

        if (o.wrongKey) {
            const k = b64url(Buffer.from(o.wrongKey, 'hex'));
            await page.route(isLicense, async (route) => {
                const method = route.request().method();
                if (method === 'GET') {
                    out.license.push({ method, status: 200, url: route.request().url(),
                                       intercepted: true });
                    await route.fulfill({
                        status: 200, contentType: 'application/octet-stream',
                        body: Buffer.from(o.wrongKey, 'hex'),
                    });
                    return;
                }
                let kids = [];
                try { kids = JSON.parse(route.request().postData() || '{}').kids || []; }
                catch (e) { /* leave empty */ }
                out.license.push({ method, status: 200, url: route.request().url(), kids,
                                   intercepted: true });
                await route.fulfill({
                    status: 200, contentType: 'application/json',
                    body: JSON.stringify({ keys: kids.map((kid) => ({ kty: 'oct', kid, k })),
                                           type: 'temporary' }),
                });
            });
        }

        if (o.videoOnly) {
            await page.route((u) => u.pathname.endsWith('.mpd'), async (route) => {
                const r = await route.fetch();
                const mpd = (await r.text()).replace(
                    /<AdaptationSet\b[^>]*(contentType|mimeType)="audio[^"]*"[^]*?<\/AdaptationSet>\s*/g, '');
                out.audioRemoved = true;
                await route.fulfill({ response: r, body: mpd });
            });
            // a master playlist: no audio renditions, variants without
            // AUDIO= and without the audio codec (media playlists pass)
            await page.route((u) => u.pathname.endsWith('.m3u8'), async (route) => {
                const r = await route.fetch();
                let pl = await r.text();
                if (/^#EXT-X-STREAM-INF:/m.test(pl)) {
                    pl = pl.replace(/^#EXT-X-MEDIA:TYPE=AUDIO,.*\n/gm, '')
                        .replace(/,AUDIO="[^"]*"/g, '')
                        .replace(/CODECS="([^"]*)"/g, (_, c) => `CODECS="${
                            c.split(',').filter((x) => !/^mp4a\./.test(x)).join(',')}"`);
                    out.audioRemoved = true;
                }
                await route.fulfill({ response: r, body: pl });
            });
        }

        const resp = await page.goto(o.url, { waitUntil: 'load', timeout: 20000 });
        if (!resp || resp.status() !== 200) {
            out.reason = `the page answered ${resp ? resp.status() : 'nothing'}`;
            process.stdout.write(JSON.stringify(out) + '\n');
            return;
        }

        const snapshot = () => page.evaluate(() => {
            const v = document.querySelector('video');
            const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
            return {
                state: window.playerState ? { ...window.playerState } : null,
                video: v ? {
                    currentTime: v.currentTime, paused: v.paused, ended: v.ended,
                    readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
                    error: v.error ? { code: v.error.code, message: v.error.message } : null,
                    frames: q ? q.totalVideoFrames : null,
                    dropped: q ? q.droppedVideoFrames : null,
                    buffered: Array.from({ length: v.buffered.length },
                        (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
                } : null,
            };
        });

        const deadline = Date.now() + o.timeout * 1000;
        let snap;
        for (;;) {
            snap = await snapshot();
            if (snap.video?.error && !snap.state?.error) {
                // the <video> element has failed and the page has yet to
                // hear of it (events are asynchronous): give it 2 s
                const until = Date.now() + 2000;
                while (!snap.state?.error && Date.now() < until) {
                    await sleep(100);
                    snap = await snapshot();
                }
            }
            const err = snap.state?.error
                || (snap.video?.error && `media error ${snap.video.error.code} (the page did not report it)`);
            if (err) { out.reason = `error: ${err}`; break; }
            if (snap.video && snap.video.currentTime >= o.minTime) {
                out.ok = true; out.reason = `currentTime ${snap.video.currentTime.toFixed(2)} >= ${o.minTime}`;
                break;
            }
            if (Date.now() > deadline) { out.reason = `timeout after ${o.timeout} s`; break; }
            await sleep(250);
        }
        out.state = snap.state;
        out.video = snap.video;
        out.time = snap.video ? snap.video.currentTime : 0;

        // what the picture is. EME video cannot be read back from a canvas
        // (drawImage gives black), so this looks at what Chromium painted:
        // a screenshot of the <video> element, drawn from a data: URL.
        // frame: mean and spread of its luma (near 0 spread = black/flat);
        // motion: mean absolute luma change over 0.5 s of playback.
        const a = await frameLuma(page);
        if (a) {
            out.frame = { mean: a.mean, stddev: a.stddev };
            if (out.ok) {
                await sleep(500);
                const b = await frameLuma(page);
                if (b && b.luma.length === a.luma.length) {
                    let s = 0;
                    for (let i = 0; i < a.luma.length; i++) s += Math.abs(a.luma[i] - b.luma[i]);
                    out.frame.motion = s / a.luma.length;
                }
            }
        }

        if (o.screenshot) await page.screenshot({ path: o.screenshot });
    } finally {
        await browser.close();
    }
    process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
    process.stderr.write(`playback.mjs: ${e && e.stack || e}\n`);
    process.exit(2);
});
