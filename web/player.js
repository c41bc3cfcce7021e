/*
 * ngx_media player: plays packaged content M with shaka-player.
 *
 * Served as /player/<M>?exp=..&kid=..&sig=.. (web/player.html). It plays
 * <origin>/packaged/<M>/stream.mpd (cbcs DASH), gets the ClearKey key from
 * <origin>/license/<M> (W3C ClearKey JSON), and appends the page's own
 * exp/kid/sig query arguments to every same-origin request it makes
 * (manifest, segments, licence), so a signed player URL is all it needs.
 * <html data-manifest=".." data-license=".."> override the two URLs.
 *
 * With &signed=path it plays the path-signed URLs instead,
 * <origin>/packaged/<M>/s/<exp>.<kid>.<sig>/stream.mpd (or master.m3u8), as
 * any player would: no request filter and no licence server of its own,
 * the relative URLs of the MPD and playlists and the licence URL they name
 * carry the signature (docs/packaging.md "URLs").
 *
 * With &format=hls it plays <origin>/packaged/<M>/master.m3u8 instead (HLS
 * over the same segments; <html data-hls-manifest=".."> overrides it). The
 * key then comes from the playlists' EXT-X-KEY KEYFORMAT="identity": shaka
 * GETs its URI (/license/<M>, the 16-byte key), takes the KID from the init
 * segment and hands both to the browser's ClearKey CDM.
 *
 * For tests and the curious, window.playerState holds:
 *   error       null, or a one-line description of the first fatal error
 *   errorCode   the shaka error code (number) or 'media:<n>' or null
 *   time        video.currentTime, updated on every timeupdate
 *   loaded      true once the manifest is loaded and playback can start
 *   format      'dash' or 'hls' (what the page asked for)
 *   manifestType  what shaka loaded ('DASH', 'HLS')
 *   keySystem   the EME key system in use ('org.w3.clearkey')
 *   licenses    number of licence requests sent (for HLS: the one to the
 *               data: URI shaka makes of the "identity" key)
 *   keys        number of key requests sent (HLS "identity" key URIs)
 *   frames      decoded video frames (getVideoPlaybackQuality)
 *   width, height  the decoded picture size
 */
(function () {
    'use strict';

    var AUTH_ARGS = ['exp', 'kid', 'sig'];

    var video = document.getElementById('video');
    var statusEl = document.getElementById('status');
    var errorEl = document.getElementById('error');
    var titleEl = document.getElementById('title');

    var state = window.playerState = {
        error: null, errorCode: null, time: 0, loaded: false,
        format: null, manifestType: null,
        keySystem: null, licenses: 0, keys: 0, frames: 0, width: 0,
        height: 0
    };

    function fail(msg, code) {
        if (state.error === null) {
            state.error = msg;
            state.errorCode = code === undefined ? null : code;
        }
        errorEl.textContent = (errorEl.hidden ? '' : errorEl.textContent + '\n')
                              + msg;
        errorEl.hidden = false;
        statusEl.textContent = 'error';
        if (window.console) {
            console.error('player: ' + msg);
        }
    }

    function shakaErrorText(e) {
        var name = '', code;
        if (!e || typeof e.code !== 'number') {
            return String(e && e.message || e);
        }
        var codes = shaka.util.Error.Code;
        for (code in codes) {
            if (codes[code] === e.code) {
                name = ' ' + code;
                break;
            }
        }
        var data = (e.data || []).map(function (d) {
            if (d && d.message) {
                return d.message;
            }
            try {
                return typeof d === 'object' ? JSON.stringify(d) : String(d);
            } catch (x) {
                return String(d);
            }
        }).filter(function (s) {
            return s && s !== '{}' && s !== 'undefined' && s !== 'null';
        });
        return 'shaka error ' + e.code + name + ' (category ' + e.category
               + ', severity ' + e.severity + ')'
               + (data.length ? ': ' + data.join('; ') : '');
    }

    /* the content id, the format and the URLs */
    var query = new URLSearchParams(location.search);
    var m = location.pathname.match(/\/player\/([^\/]+)\/?$/);
    var id = m ? decodeURIComponent(m[1]) : null;
    var ds = document.documentElement.dataset;
    var hls = query.get('format') === 'hls';
    var pathSigned = query.get('signed') === 'path';
    var prefix = id && location.origin + '/packaged/' + encodeURIComponent(id)
        + (pathSigned ? '/s/' + encodeURIComponent(query.get('exp') + '.'
                                                   + query.get('kid') + '.'
                                                   + query.get('sig'))
                      : '');
    var manifestUrl = (hls ? ds.hlsManifest : ds.manifest)
        || (prefix && prefix + (hls ? '/master.m3u8' : '/stream.mpd'));
    var licenseUrl = ds.license
        || (id && location.origin + '/license/' + encodeURIComponent(id));

    state.format = hls ? 'hls' : 'dash';

    if (id) {
        titleEl.textContent = 'ngx_media player: content ' + id
                              + (hls ? ' (HLS)' : '');
    }

    /* the signature of the page's URL, passed on to every request */
    var auth = AUTH_ARGS.filter(function (k) { return query.has(k); })
                        .map(function (k) { return [k, query.get(k)]; });

    function signed(uri) {
        var u;
        if (!auth.length) {
            return uri;
        }
        try {
            u = new URL(uri, location.href);
        } catch (x) {
            return uri;
        }
        if (u.origin !== location.origin) {
            return uri;        /* never hand our signature to another host */
        }
        auth.forEach(function (kv) { u.searchParams.set(kv[0], kv[1]); });
        return u.toString();
    }

    function updateStatus(player) {
        var q = video.getVideoPlaybackQuality
                ? video.getVideoPlaybackQuality() : null;
        state.time = video.currentTime;
        state.frames = q ? q.totalVideoFrames : 0;
        state.width = video.videoWidth;
        state.height = video.videoHeight;
        if (state.error === null) {
            statusEl.textContent = 't=' + video.currentTime.toFixed(2) + ' s'
                + '  ' + video.videoWidth + 'x' + video.videoHeight
                + '  frames=' + state.frames
                + (state.keySystem ? '  drm=' + state.keySystem : '')
                + (video.paused ? '  (paused)' : '');
        }
    }

    async function main() {
        if (!manifestUrl) {
            fail('no content id in the page URL (expected /player/<id>)');
            return;
        }
        if (typeof shaka === 'undefined') {
            fail('shaka-player did not load (/player/assets/shaka/)');
            return;
        }
        shaka.polyfill.installAll();
        if (!shaka.Player.isBrowserSupported()) {
            fail('this browser cannot play DASH or HLS with EME '
                 + '(shaka-player says it is not supported)');
            return;
        }

        var player = new shaka.Player();
        window.player = player;
        await player.attach(video);

        /* DASH asks this licence server; for HLS shaka builds the ClearKey
           licence itself from the "identity" key and does not use it */
        if (!pathSigned) {
            player.configure({
                drm: { servers: { 'org.w3.clearkey': licenseUrl } }
            });
        }

        /* counts requests; signs them unless the URLs are path-signed */
        var RT = shaka.net.NetworkingEngine.RequestType;
        player.getNetworkingEngine().registerRequestFilter(
            function (type, request) {
                if (!pathSigned) {
                    request.uris = request.uris.map(signed);
                }
                if (type === RT.LICENSE) {
                    state.licenses++;
                } else if (type === RT.KEY) {
                    state.keys++;
                }
            });

        player.addEventListener('error', function (ev) {
            fail(shakaErrorText(ev.detail), ev.detail && ev.detail.code);
        });
        video.addEventListener('error', function () {
            var e = video.error;
            if (e) {
                fail('media error ' + e.code + ': ' + (e.message || ''),
                     'media:' + e.code);
            }
        });
        ['timeupdate', 'playing', 'pause', 'resize', 'loadeddata']
            .forEach(function (ev) {
                video.addEventListener(ev, function () { updateStatus(player); });
            });

        try {
            await player.load(manifestUrl);
        } catch (e) {
            fail(shakaErrorText(e), e && e.code);
            return;
        }
        state.loaded = true;
        state.manifestType = player.getManifestType();
        var drm = player.drmInfo();
        state.keySystem = drm ? drm.keySystem : null;
        updateStatus(player);
        try {
            await video.play();
        } catch (e) {
            /* autoplay refused (or aborted by an error): the controls are
               there to start it */
            if (state.error === null) {
                statusEl.textContent = 'press play (' + e.name + ')';
            }
        }
    }

    main().catch(function (e) { fail(shakaErrorText(e), e && e.code); });
})();
