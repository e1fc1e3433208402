"""The Apache Kafka broker, fetched from Maven Central with Maven and cached in the stack dir."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from msgstate.schemas.exceptions import StackError

KAFKA_VERSION = "4.3.1"
# Kafka 4.x leaves logging out of its POM (KAFKA-18466); SLF4J stays on 1.7.x.
LOG4J_VERSION = "2.25.2"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>msgstate.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def libs_dir(stack_dir: Path) -> Path:
    return stack_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def is_fetched(stack_dir: Path) -> bool:
    return (libs_dir(stack_dir) / ".complete").exists()


def fetch(stack_dir: Path) -> Path:
    """Fetch the broker's jars once; later calls return the cached folder at once."""
    libs = libs_dir(stack_dir)
    if is_fetched(stack_dir):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka broker: apt-get install -y maven")
    home = libs.parent
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
    log = home / "fetch.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={libs.resolve()}"],
            cwd=home, stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if done.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"fetching Kafka {KAFKA_VERSION} with Maven failed; see {log}")
    (libs / ".complete").write_text(KAFKA_VERSION + "\n")
    return libs


def java() -> str:
    path = shutil.which("java")
    if path is None:
        raise StackError("Java 17+ is needed to run the Kafka broker: "
                         "apt-get install -y openjdk-17-jre-headless")
    return path
