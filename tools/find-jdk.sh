# Sourced by the bitdelta launcher and the bench scripts that build on this machine. find_jdk prints the home of a
# JDK >= 22 (java.lang.foreign and the Vector API): JAVA_HOME, then /usr/lib/jvm/*, then macOS's
# JavaVirtualMachines, then `java` on the PATH; it fails (status 1) where there is none.

java_feature_version() {  # prints the feature version (e.g. 25) of the java binary $1, or nothing
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}

find_jdk() {
  local candidate version
  for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/* /Library/Java/JavaVirtualMachines/*/Contents/Home; do
    [[ -n $candidate && -x $candidate/bin/java ]] || continue
    version=$(java_feature_version "$candidate/bin/java")
    if [[ -n $version && $version -ge 22 ]]; then echo "$candidate"; return 0; fi
  done
  if command -v java >/dev/null 2>&1; then
    version=$(java_feature_version java)
    if [[ -n $version && $version -ge 22 ]]; then dirname "$(dirname "$(readlink -f "$(command -v java)")")"; return 0; fi
  fi
  return 1
}
