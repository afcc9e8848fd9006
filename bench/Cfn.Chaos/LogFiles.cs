using System.Globalization;

namespace Cfn.Chaos;

/// <summary>One line of a cfn text log (<c>2026-12-01T22:00:00.123Z INFO  [Category] message</c>).</summary>
public sealed record LogLine(ProcessRun Run, int Number, DateTimeOffset Time, string Level, string Message)
{
    /// <summary>Where the line is, for evidence: <c>coordinator-1.2.log:431</c>.</summary>
    public string Where => $"{Path.GetFileName(Run.LogPath)}:{Number}";

    /// <summary>The value of <c>name=value</c> in the message (up to the next space; a quoted value without its quotes).</summary>
    public string? Field(string name) => LogFiles.Field(Message, name);

    public string Evidence => $"{Where}: {Time:HH:mm:ss.fff} {Level} {Message}";
}

/// <summary>Reads the per-run log files. Lines without the leading timestamp (stack traces) are skipped.</summary>
public static class LogFiles
{
    public static List<LogLine> Read(ProcessRun run)
    {
        var lines = new List<LogLine>();
        if (!File.Exists(run.LogPath))
        {
            return lines;
        }

        using var stream = new FileStream(run.LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        var number = 0;
        while (reader.ReadLine() is { } text)
        {
            number++;
            if (TryParse(run, number, text, out var line))
            {
                lines.Add(line);
            }
        }

        return lines;
    }

    internal static bool TryParse(ProcessRun run, int number, string text, out LogLine line)
    {
        line = null!;
        // 2026-12-01T22:00:00.123Z LEVEL [Category] message
        if (text.Length < 26 || text[4] != '-' || text[23] != 'Z' ||
            !DateTimeOffset.TryParseExact(text[..24], "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
        {
            return false;
        }

        var rest = text[25..];
        var level = rest.Split(' ', 2)[0];
        var bracket = rest.IndexOf("] ", StringComparison.Ordinal);
        var message = bracket >= 0 ? rest[(bracket + 2)..] : rest;
        line = new LogLine(run, number, time, level, message);
        return true;
    }

    public static string? Field(string message, string name)
    {
        var key = name + "=";
        var at = 0;
        while ((at = message.IndexOf(key, at, StringComparison.Ordinal)) >= 0)
        {
            if (at == 0 || message[at - 1] is ' ' or '(' or ',')
            {
                var start = at + key.Length;
                if (start < message.Length && message[start] == '"')
                {
                    var close = message.IndexOf('"', start + 1);
                    return close < 0 ? message[(start + 1)..] : message[(start + 1)..close];
                }

                var end = message.IndexOfAny([' ', ';', ')'], start);
                return end < 0 ? message[start..] : message[start..end];
            }

            at += key.Length;
        }

        return null;
    }
}

/// <summary>Follows one growing log file (the injector waits for a line with it).</summary>
internal sealed class LogFollower(ProcessRun run)
{
    private long _offset;
    private int _number;
    private string _partial = "";

    /// <summary>The complete lines written since the last call.</summary>
    public List<LogLine> ReadNew()
    {
        var lines = new List<LogLine>();
        if (!File.Exists(run.LogPath))
        {
            return lines;
        }

        using var stream = new FileStream(run.LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        stream.Seek(_offset, SeekOrigin.Begin);
        using var reader = new StreamReader(stream);
        var text = _partial + reader.ReadToEnd();
        _offset = stream.Position;
        var parts = text.Split('\n');
        _partial = parts[^1];
        foreach (var part in parts[..^1])
        {
            _number++;
            if (LogFiles.TryParse(run, _number, part.TrimEnd('\r'), out var line))
            {
                lines.Add(line);
            }
        }

        return lines;
    }
}
