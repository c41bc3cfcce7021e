# ngx_media — see README.md.  `make run` / `make test` are the two commands.

SHELL      := /bin/bash
BUILD      ?= build
CC         ?= cc
NGINX_SRC  ?= /usr/share/nginx/src
PKGS       := libzmq libpq libcrypto zlib libcurl

WARN       := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 $(WARN) -fPIC -MMD -MP -D_GNU_SOURCE
CPPFLAGS   += -Ilib $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS     += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer

LIB_SRC    := $(wildcard lib/*.c)
COMMON_SRC := $(wildcard daemons/common/*.c)
DAEMONS    := $(filter-out common,$(notdir $(wildcard daemons/*)))
TOOLS      := $(notdir $(wildcard tools/*))
UNIT_SRC   := $(wildcard t/unit/test_*.c)
MOD_SRC    := $(wildcard ngx_media_module/*.c ngx_media_module/*.h) \
              ngx_media_module/config

# one build tree per flavour: $(BUILD) plain, $(BUILD)/asan sanitized
define flavour
$(1)_LIB_OBJ    := $$(LIB_SRC:%.c=$(2)/obj/%.o)
$(1)_COMMON_OBJ := $$(COMMON_SRC:%.c=$(2)/obj/%.o)
$(1)_LIBA       := $(2)/lib/libmedia.a
$(1)_BINS       := $$(DAEMONS:%=$(2)/bin/media-%) $$(TOOLS:%=$(2)/bin/media-%)
$(1)_UNITS      := $$(UNIT_SRC:t/unit/%.c=$(2)/t/%)

$(2)/obj/%.o: %.c
	@mkdir -p $$(@D)
	$$(CC) $$(CPPFLAGS) -Idaemons/common $$(CFLAGS) $(3) -c $$< -o $$@

$$($(1)_LIBA): $$($(1)_LIB_OBJ)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

$(2)/bin/media-%: $$($(1)_LIBA) $$($(1)_COMMON_OBJ) \
		$$$$(foreach s,$$$$(wildcard daemons/$$$$*/*.c tools/$$$$*/*.c),$(2)/obj/$$$$(basename $$$$s).o)
	@mkdir -p $$(@D)
	$$(CC) $(3) -o $$@ $$(filter %.o,$$^) $$($(1)_LIBA) $$(LDLIBS)

$(2)/t/test_%: $(2)/obj/t/unit/test_%.o $$($(1)_LIBA)
	@mkdir -p $$(@D)
	$$(CC) $(3) -o $$@ $$< $$($(1)_LIBA) $$(LDLIBS)

-include $$(shell find $(2)/obj -name '*.d' 2>/dev/null)
endef

.SECONDEXPANSION:
.SECONDARY:
$(eval $(call flavour,PLAIN,$(BUILD),))
$(eval $(call flavour,ASAN,$(BUILD)/asan,$(SAN)))

MODULE := $(BUILD)/nginx/objs/ngx_http_media_module.so
FAULTS := $(BUILD)/t/upload_faults.so

.PHONY: all lib module daemons units deps run start stop status test \
        unit integration fuzz bench clean distclean image-check web

all: lib daemons module units

lib: $(PLAIN_LIBA)
daemons: $(PLAIN_BINS)
units: $(PLAIN_UNITS) $(ASAN_UNITS) $(FAULTS)
module: $(MODULE)

# the fault injector t/63-upload-faults.t preloads into nginx (tests only;
# not instrumented: with the ASan module it comes after the runtime)
$(FAULTS): t/fault/upload_faults.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -o $@ $< -ldl

# configure lists the module's .c files: a file added or removed means
# configuring again (this stamp changes only when the list does)
MOD_LIST   := $(BUILD)/module-sources
MOD_FILES  := $(sort $(wildcard ngx_media_module/*.c))
$(shell mkdir -p $(BUILD) && { echo '$(MOD_FILES)' | cmp -s - $(MOD_LIST) \
          || echo '$(MOD_FILES)' >$(MOD_LIST); })

# nginx-dev ships Debian's configured source tree and its configure flags;
# the module is built --with-compat so it loads into the stock binary.
$(BUILD)/nginx/.configured: ngx_media_module/config $(NGINX_SRC)/conf_flags \
		$(MOD_LIST)
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD)/nginx
	cp -a $(NGINX_SRC)/. $(BUILD)/nginx/
	cd $(BUILD)/nginx && . ./conf_flags && \
	  MEDIA_LIBA=$(abspath $(PLAIN_LIBA)) MEDIA_LIBDIR=$(abspath lib) \
	  ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-O2 -g -fPIC -Wextra -Wno-unused-parameter \
	                   -Wno-missing-field-initializers -Wno-sign-compare" \
	    --add-dynamic-module=$(abspath ngx_media_module) >configure.log
	touch $@

$(MODULE): $(BUILD)/nginx/.configured $(MOD_SRC) $(PLAIN_LIBA) $(wildcard lib/*.h)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	touch $@

# the same module under AddressSanitizer for `make integration` (not in
# `all`): its own nginx tree, linked against the sanitized libmedia.a.  The
# stock nginx binary is not instrumented, so media-stack preloads libasan
# into nginx (MEDIA_NGINX_PRELOAD); reports land in $MEDIA_VAR/log/asan.*
MODULE_ASAN  := $(BUILD)/nginx-asan/objs/ngx_http_media_module.so
ASAN_PRELOAD  = $(shell $(CC) -print-file-name=libasan.so)

$(BUILD)/nginx-asan/.configured: ngx_media_module/config $(NGINX_SRC)/conf_flags \
		$(MOD_LIST)
	rm -rf $(BUILD)/nginx-asan && mkdir -p $(BUILD)/nginx-asan
	cp -a $(NGINX_SRC)/. $(BUILD)/nginx-asan/
	cd $(BUILD)/nginx-asan && . ./conf_flags && \
	  MEDIA_LIBA=$(abspath $(ASAN_LIBA)) MEDIA_LIBDIR=$(abspath lib) \
	  ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-O1 -g -fPIC -Wextra -Wno-unused-parameter \
	                   -Wno-missing-field-initializers -Wno-sign-compare \
	                   -fsanitize=address -fno-omit-frame-pointer" \
	    --with-ld-opt="$(SAN)" \
	    --add-dynamic-module=$(abspath ngx_media_module) >configure.log
	touch $@

$(MODULE_ASAN): $(BUILD)/nginx-asan/.configured $(MOD_SRC) $(ASAN_LIBA) $(wildcard lib/*.h)
	$(MAKE) -C $(BUILD)/nginx-asan -f objs/Makefile modules
	touch $@

deps:
	@scripts/media-deps

# the player's shaka-player, the check page's dash.js and the playback tests'
# playwright-core, pinned in package-lock.json; npm ci again only when
# package*.json change
web: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

run: deps all web
	scripts/media-stack run
start: deps all web
	scripts/media-stack start
stop:
	scripts/media-stack stop
status:
	scripts/media-stack status

unit: $(PLAIN_UNITS) $(ASAN_UNITS)
	prove -v $(PLAIN_UNITS)
	ASAN_OPTIONS=detect_leaks=1 prove $(ASAN_UNITS)

integration: all $(ASAN_BINS) $(MODULE_ASAN) web
	MEDIA_BIN=$(abspath $(BUILD))/asan/bin MEDIA_MODULE=$(abspath $(MODULE_ASAN)) \
	  MEDIA_NGINX_PRELOAD=$(ASAN_PRELOAD) prove -v t/

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz
	$(MAKE) integration

bench: deps all
	bench/run
	bench/archive
	bench/upload
	bench/package

# libFuzzer over the MP4 box parser + cbcs encryptor, and the JSON reader
# and writer (t/fuzz/README.md), FUZZ_TIME seconds each
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
FUZZ_FLAGS = -g -O1 -std=gnu11 -D_GNU_SOURCE $(WARN) \
             -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ      := $(BUILD)/fuzz/fuzz_mp4 $(BUILD)/fuzz/fuzz_json

fuzz: $(FUZZ)
	mkdir -p $(BUILD)/fuzz/corpus && cp t/fuzz/corpus/* $(BUILD)/fuzz/corpus/
	mkdir -p $(BUILD)/fuzz/corpus-json \
	    && cp t/fuzz/corpus-json/* $(BUILD)/fuzz/corpus-json/
	cd $(BUILD)/fuzz && { ./fuzz_mp4 -max_total_time=$(FUZZ_TIME) \
	    -print_final_stats=1 corpus >fuzz.log 2>&1; rc=$$?; \
	    tail -15 fuzz.log; exit $$rc; }
	cd $(BUILD)/fuzz && { ./fuzz_json -max_total_time=$(FUZZ_TIME) \
	    -print_final_stats=1 corpus-json >fuzz-json.log 2>&1; rc=$$?; \
	    tail -15 fuzz-json.log; exit $$rc; }

$(BUILD)/fuzz/fuzz_mp4: t/fuzz/fuzz_mp4.c $(LIB_SRC) $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) \
	    -Ilib t/fuzz/fuzz_mp4.c lib/mp4.c lib/h264.c lib/cbcs.c lib/buf.c \
	    lib/mm.c -lcrypto -o $@

$(BUILD)/fuzz/fuzz_json: t/fuzz/fuzz_json.c lib/json.c lib/buf.c lib/mm.c \
		$(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Ilib t/fuzz/fuzz_json.c lib/json.c lib/buf.c \
	    lib/mm.c -o $@

image-check:
	../shared/tools/image-check

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf var node_modules
