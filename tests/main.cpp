// The single main() of the ptq_tests executable (every tests/*.cpp and tests/<area>/*.cpp).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
