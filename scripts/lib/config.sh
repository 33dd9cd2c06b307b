# Sourced by the scripts: config_with SRC SECTION.KEY=VALUE ... prints SRC (a config.toml) with
# those keys set. A key is replaced where the file has it, added at the end of its section
# otherwise, and a section the file lacks is added at the end. VALUE is TOML as written
# (strings with their quotes).
config_with() {
    local src="$1"
    shift
    printf '%s\n' "$@" | awk '
        FNR == NR {
            eq = index($0, "=")
            dot = index($0, ".")
            want[substr($0, 1, dot - 1), substr($0, dot + 1, eq - dot - 1)] = substr($0, eq + 1)
            next
        }
        function flush(section,   key, k) {
            for (key in want) {
                split(key, k, SUBSEP)
                if (k[1] == section && !((section, k[2]) in done)) {
                    print k[2] " = " want[key]
                    done[section, k[2]] = 1
                }
            }
        }
        /^[ \t]*\[[a-z_.]+\][ \t]*$/ {
            flush(section)
            section = $0
            gsub(/[][ \t]/, "", section)
            seen[section] = 1
            print
            next
        }
        /^[ \t]*[a-z_]+[ \t]*=/ {
            key = $0
            sub(/^[ \t]*/, "", key)
            sub(/[ \t]*=.*/, "", key)
            if ((section, key) in want) {
                print key " = " want[section, key]
                done[section, key] = 1
                next
            }
        }
        { print }
        END {
            flush(section)
            for (key in want) {
                split(key, k, SUBSEP)
                if (!(k[1] in seen)) {
                    print ""
                    print "[" k[1] "]"
                    flush(k[1])
                    seen[k[1]] = 1
                }
            }
        }
    ' - "$src"
}
